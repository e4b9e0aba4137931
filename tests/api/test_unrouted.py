"""JSON answers for unknown API paths."""

from flask.testing import FlaskClient


def test_unknown_api_paths_answer_json_and_pages_stay_html(client: FlaskClient) -> None:
    missing = client.get("/api/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing.is_json and "error" in missing.json
    wrong_method = client.delete("/api/v1/projects")
    assert wrong_method.status_code == 405 and wrong_method.is_json
    page = client.get("/no-such-page")
    assert page.status_code == 404 and not page.is_json
