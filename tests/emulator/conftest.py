"""The emulator suite loads the fixtures every suite will share."""

