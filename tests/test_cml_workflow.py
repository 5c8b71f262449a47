"""The CI workflow authenticates to the default remote (GCS) and passes no AWS secret on that path."""

import yaml

from conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "cml.yaml"


def test_default_path_uses_the_gcs_key_and_no_aws_secret():
    workflow = yaml.safe_load(WORKFLOW.read_text())  # comments (the documented S3 variant) are not steps
    steps = workflow["jobs"]["report"]["steps"]
    names = [step.get("uses", step.get("name")) for step in steps]
    auth = names.index("google-github-actions/auth@v2")
    assert steps[auth]["with"] == {"credentials_json": "${{ secrets.GCP_SA_KEY }}"}
    assert auth < names.index("Pull data and the base branch's outputs") < names.index("Push results")
    assert "AWS_" not in yaml.safe_dump(steps)
    default_remote = (REPO / ".dvc" / "config").read_text().split("remote = ")[1].split()[0]
    assert default_remote == "gcs"  # the credential above is for this remote


def test_the_key_file_the_action_writes_is_never_committed_or_baked_into_an_image():
    assert "gha-creds-*.json" in (REPO / ".gitignore").read_text().splitlines()
    assert "gha-creds-*.json" in (REPO / ".dockerignore").read_text().splitlines()
