"""github.com pages: App manifest registration and OAuth sign-in."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import parse_qs, urlsplit

import httpx
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.cache import MemCacheStrategy

from github_emulator import EmulatorServer
from github_emulator.testing import SampleRepository


def test_manifest_flow_creates_a_working_app(github_emulator: EmulatorServer) -> None:
    manifest = {"name": "My Sync", "url": "http://app.test",
                "hook_attributes": {"url": "http://app.test/webhooks/github"},
                "redirect_url": "http://app.test/setup/callback",
                "default_permissions": {"contents": "read"}, "default_events": ["push"]}
    page = httpx.post(f"{github_emulator.url}/settings/apps/new",
                      data={"manifest": json.dumps(manifest), "state": "xyz"})
    assert page.status_code == 200 and 'id="create-app"' in page.text
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page.text))
    confirm = httpx.post(f"{github_emulator.url}/settings/apps/new/confirm",
                         data={k: html.unescape(v) for k, v in fields.items()})
    assert confirm.status_code == 302
    location = urlsplit(confirm.headers["Location"])
    query = parse_qs(location.query)
    assert location.path == "/setup/callback" and query["state"] == ["xyz"]
    gh = GitHub(base_url=github_emulator.url + "/", cache_strategy=MemCacheStrategy())
    app = gh.rest.apps.create_from_manifest(query["code"][0]).parsed_data
    assert app.name == "My Sync" and app.pem.startswith("-----BEGIN")
    assert app.webhook_secret and app.client_secret
    reused = httpx.post(f"{github_emulator.url}/app-manifests/{query['code'][0]}/conversions")
    assert reused.status_code == 404
    as_app = GitHub(AppAuthStrategy(str(app.id), app.pem), base_url=github_emulator.url + "/",
                    cache_strategy=MemCacheStrategy())
    me = as_app.rest.apps.get_authenticated().parsed_data
    assert me is not None and me.slug == "my-sync"


def test_oauth_sign_in_and_user_installations(github_emulator: EmulatorServer,
                                              sample_repository: SampleRepository) -> None:
    app = github_emulator.app
    authorize = httpx.get(f"{github_emulator.url}/login/oauth/authorize", params={
        "client_id": app.client_id, "redirect_uri": "http://app.test/login/callback",
        "state": "s1", "login": "octo"})
    assert authorize.status_code == 302
    query = parse_qs(urlsplit(authorize.headers["Location"]).query)
    assert query["state"] == ["s1"]
    exchange = httpx.post(f"{github_emulator.url}/login/oauth/access_token",
                          data={"client_id": app.client_id, "client_secret": app.client_secret,
                                "code": query["code"][0]},
                          headers={"Accept": "application/json"})
    token = exchange.json()["access_token"]
    assert token.startswith("gho_")
    as_user = GitHub(TokenAuthStrategy(token), base_url=github_emulator.url + "/",
                     cache_strategy=MemCacheStrategy())
    assert as_user.rest.users.get_authenticated().parsed_data.login == "octo"
    installations = as_user.rest.apps.list_installations_for_authenticated_user().parsed_data
    assert [i.id for i in installations.installations] == [sample_repository.installation_id]
    repos = as_user.rest.apps.list_installation_repos_for_authenticated_user(
        sample_repository.installation_id).parsed_data
    assert [r.full_name for r in repos.repositories] == ["octo/sample"]
    form = httpx.post(f"{github_emulator.url}/login/oauth/access_token",
                      data={"client_id": app.client_id, "client_secret": app.client_secret,
                            "code": query["code"][0]})
    assert parse_qs(form.text)["error"] == ["bad_verification_code"]


def test_installation_page_installs_and_redirects(github_emulator: EmulatorServer) -> None:
    github_emulator.create_repository("octo", "one")
    github_emulator.app.setup_url = "http://app.test/setup/installed"
    answer = httpx.post(f"{github_emulator.url}/apps/{github_emulator.app.slug}"
                        "/installations/new", data={"account": "octo"})
    assert answer.status_code == 302
    installation_id = int(parse_qs(urlsplit(answer.headers["Location"]).query)
                          ["installation_id"][0])
    installation = github_emulator.installation(installation_id)
    assert installation.repository_selection == "all"
