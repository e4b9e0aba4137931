"""The emulator suite loads the fixtures every suite will share."""

pytest_plugins = ["github_emulator.testing"]
