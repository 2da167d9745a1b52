"""The command line, run as a user runs it: `python -m chatbot ...` in a subprocess."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import CORPUS, DATA, corpus_size


def run(args, env_dirs, input=None, check=True):
    env = {**os.environ, "TRK_CORPUS_DIR": str(env_dirs["corpus"]), "TRK_INDEX_DIR": str(env_dirs["index"]),
           "TRK_DATA_DIR": str(env_dirs["data"])}
    proc = subprocess.run([sys.executable, "-m", "chatbot", *args], capture_output=True, text=True,
                          env=env, input=input, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    shutil.copytree(CORPUS, root / "corpus")
    d = {"corpus": root / "corpus", "index": root / "index", "data": root / "data"}
    first = run(["index"], d)
    assert first.stdout.startswith(f"{corpus_size()[0]} added, 0 updated, 0 removed")
    return d


@pytest.mark.parametrize("cmd", [[], ["index"], ["ask"], ["eval"]])
def test_help_on_every_command(cmd, tmp_path):
    d = {"corpus": tmp_path, "index": tmp_path / "i", "data": tmp_path / "d"}
    proc = run([*cmd, "--help"], d)
    assert "Usage" in proc.stdout


def test_second_index_run_is_a_noop(dirs):
    proc = run(["index", "--json"], dirs)
    summary = json.loads(proc.stdout)
    assert (summary["added"], summary["updated"], summary["removed"], summary["chunks_embedded"]) == (0, 0, 0, 0)
    assert "0 added, 0 updated, 0 removed" in run(["index"], dirs).stdout
    assert run(["audit"], dirs).stdout.count("\treindex\tactor=cli\t") >= 3  # every run is audited


def test_check_reports_the_bad_file_and_field(dirs, tmp_path):
    bad = {**dirs, "corpus": tmp_path / "corpus"}
    shutil.copytree(dirs["corpus"], bad["corpus"])
    target = bad["corpus"] / "public-en" / "what-is-trk-fusion-cancer.md"
    target.write_text(target.read_text().replace("audience: public", "audience: patients"))
    proc = run(["index", "--check"], bad, check=False)
    assert proc.returncode == 1
    assert "what-is-trk-fusion-cancer.md:4" in proc.stderr and "audience" in proc.stderr
    proc = run(["index"], bad, check=False)
    assert proc.returncode == 1 and "patients" in proc.stderr
    assert "0 added" in run(["index"], dirs).stdout  # the real index was never touched


def test_ask_json_and_roles(dirs):
    public = json.loads(run(["ask", "--json", "What dose of larotrectinib should adults take?"], dirs).stdout)
    assert public["kind"] == "hcp_only" and "100 mg" not in public["answer"]
    hcp = json.loads(run(["ask", "--json", "--hcp", "What dose of larotrectinib should adults take?"], dirs).stdout)
    assert hcp["kind"] == "answer" and "100 mg" in hcp["answer"]
    assert {"n", "doc_id", "title", "audience", "sources", "quote"} <= set(hcp["citations"][0])


def test_ask_jsonl_batch(dirs):
    lines = [
        {"id": "a", "question": "What is TRK fusion cancer?", "role": "public"},
        {"id": "b", "question": "And how is it found?", "role": "public", "history": ["What is TRK fusion cancer?"]},
        {"id": "c", "question": "Which resistance mutations develop?", "role": "hcp"},
        {"id": "d", "question": "", "role": "public"},
    ]
    proc = run(["ask", "--jsonl"], dirs, input="\n".join(json.dumps(x) for x in lines))
    out = [json.loads(l) for l in proc.stdout.splitlines()]
    assert [o["id"] for o in out] == ["a", "b", "c", "d"]
    assert [o["kind"] for o in out] == ["answer", "answer", "answer", "invalid"]
    assert all(set(o) >= {"id", "kind", "answer", "citations", "ms"} for o in out)
    assert "G595R" in out[2]["answer"]


def test_eval_on_the_dev_set(dirs):
    proc = run(["eval", str(DATA / "dev.jsonl"), "--json"], dirs)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["leaks"] == 0 and summary["uncited_answers"] == 0
    assert summary["behaviour_accuracy"] == 1.0
    assert summary["questions"] >= 32


def test_ask_without_index_is_a_clear_error(tmp_path):
    d = {"corpus": CORPUS, "index": tmp_path / "none", "data": tmp_path / "d"}
    proc = run(["ask", "What is TRK fusion cancer?"], d, check=False)
    assert proc.returncode == 1 and "no index has been built" in proc.stderr


def test_hcp_account_commands(tmp_path):
    from chatbot.accounts import Accounts

    d = {"corpus": CORPUS, "index": tmp_path / "index", "data": tmp_path / "data"}
    accounts = Accounts(f"sqlite:///{tmp_path / 'data' / 'accounts.sqlite3'}")
    for email, name, number in [("anna@example.org", "Anna de Vries", "19012345601"),
                                ("bob@example.org", "Bob Smit", "11111111111"),
                                ("carl@example.org", "Carl Klein", "22222222222")]:
        accounts.register(name=name, email=email, profession="physician", country="NL",
                          registration_number=number, password="correct horse battery staple")
    assert "anna@example.org" in run(["hcp", "list", "--pending"], d).stdout
    out = run(["hcp", "import-register", str(DATA / "register_extract.csv")], d).stdout
    assert "3 register rows imported; 1 pending accounts verified" in out
    run(["hcp", "approve", "bob@example.org"], d)
    run(["hcp", "reject", "carl@example.org", "--reason", "not found in the register"], d)
    assert "no accounts awaiting verification" in run(["hcp", "list", "--pending"], d).stdout
    listing = run(["hcp", "list"], d).stdout
    assert "bob@example.org" in listing and "verified" in listing and "rejected" in listing
    missing = run(["hcp", "approve", "nobody@example.org"], d, check=False)
    assert missing.returncode == 1 and "no account for nobody@example.org" in missing.stderr
    run(["maintainer", "add", "ops@example.org", "--password", "maintainer passphrase 1"], d)
    run(["hcp", "delete", "bob@example.org", "--yes"], d)
    assert "bob@example.org" not in run(["hcp", "list"], d).stdout
    audit = run(["audit", "--since", "2000-01-01"], d).stdout
    for event in ("register", "verification.verified", "verification.rejected", "maintainer.add", "account.delete"):
        assert f"\t{event}\t" in audit
    assert "@" not in audit  # the audit trail holds no email addresses
    bad = run(["audit", "--since", "yesterday"], d, check=False)
    assert bad.returncode == 1 and "not a date" in bad.stderr


def test_review_lists_what_got_no_answer(dirs, tmp_path):
    from chatbot.accounts import Accounts
    from chatbot.config import Settings

    data = tmp_path / "review-data"
    settings = Settings(data_dir=data)
    Accounts(settings.db_url).add_unanswered("how much does it cost", "no_answer", "en", "about > Costs")
    proc = run(["review", "--days", "7"], {**dirs, "data": data})
    assert "how much does it cost" in proc.stdout and "no_answer" in proc.stdout and "about > Costs" in proc.stdout


def test_eval_cv_reports_held_out_families(dirs):
    """A quick run (2 folds, 120 messages of each): the full one is in README."""
    proc = run(["eval", "--cv", "--json", "--folds", "2", "--limit", "120"], dirs)
    table = json.loads(proc.stdout.strip().splitlines()[-1])
    assert table["families"] >= 50 and set(table["per_kind"]) >= {"answer", "adverse_event", "hcp_only"}
    assert table["adverse_event_recall"] >= 0.9
    assert len(table["confusion"]) == len(table["kinds"])
