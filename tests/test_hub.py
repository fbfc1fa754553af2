"""The Hub: push and pull hypernetworks and adapters over real HTTP, against a loopback test Hub.

The real client code runs in fresh processes whose environment points ``HF_ENDPOINT`` at
`tests.hub_server.FakeHub` (a free port on 127.0.0.1), with a fresh ``HF_HOME`` and a dummy
token. Three processes do all the Hub traffic (push; pull, generate and every error case; plain
peft), so the module stays fast; each test below checks one part of what they recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hyperadapt.errors import HyperAdaptError

from .hub_server import FakeHub, Fault

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ["test 1 the film was good and great", "test 2 the film was dull and grim"]
HYPER = "tester/hyper"
ADAPTER = "tester/adapter-single"

# Runs a list of steps in one fresh interpreter: CLI invocations (hyperadapt.cli.main, exactly as
# the console script runs it) and Python snippets (which set `result`), recording each outcome.
RUNNER = r"""
import contextlib, io, json, sys, traceback
steps = json.load(open(sys.argv[1]))
results = {}
for step in steps:
    out, err = io.StringIO(), io.StringIO()
    record = {}
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if step["kind"] == "cli":
                from hyperadapt.cli import main
                record["rc"] = main(step["argv"])
            else:
                scope = {}
                exec(step["code"], scope)
                record["value"] = scope.get("result")
        except SystemExit as e:
            record["rc"] = e.code
        except BaseException as e:
            record["exception"] = f"{type(e).__name__}: {e}"
            record["traceback"] = traceback.format_exc()
    record["stdout"], record["stderr"] = out.getvalue(), err.getvalue()
    results[step["name"]] = record
json.dump(results, open(sys.argv[2], "w"))
"""

# Changes every generator weight a little, so a branch holds visibly different weights.
PERTURB = """
import torch
from hyperadapt.runtime import load_hypernetwork
def perturbed(folder):
    hypernet = load_hypernetwork(folder)
    with torch.no_grad():
        for p in hypernet.generator.parameters():
            p.add_(0.01)
    return hypernet
def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
"""

PEFT_FROM_HUB = """
import json, sys, torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer
base_path, repo, sentences = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
base = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=2)
model = PeftModel.from_pretrained(base, repo).eval()
tok = AutoTokenizer.from_pretrained(base_path)
with torch.no_grad():
    logits = model(**tok(sentences, return_tensors="pt", padding=True)).logits
assert "hyperadapt" not in sys.modules
print(json.dumps(logits.tolist()))
"""


def _env(hub: FakeHub, home: Path) -> dict[str, str]:
    # Built from scratch: no proxy variables, nothing from the developer's Hub login.
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "HF_HOME": str(home / "hf"),
        "HF_ENDPOINT": hub.endpoint,
        "HF_TOKEN": hub.token,
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(ROOT),
    }


def _run_steps(steps: list[dict], env: dict, workdir: Path, name: str) -> dict:
    steps_file, results_file = workdir / f"{name}_steps.json", workdir / f"{name}_results.json"
    steps_file.write_text(json.dumps(steps))
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(steps_file), str(results_file)],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and results_file.is_file(), proc.stderr[-3000:]
    return json.loads(results_file.read_text())


def cli(name: str, *argv: str) -> dict:
    return {"kind": "cli", "name": name, "argv": list(argv)}


def py(name: str, code: str) -> dict:
    return {"kind": "py", "name": name, "code": code}


@pytest.fixture(scope="module")
def hub():
    server = FakeHub().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def session(hub, trained_run, tmp_path_factory):
    """Push from one process, then pull, generate and hit every error from a fresh one."""
    work = tmp_path_factory.mktemp("hub")
    hyper_dir = str(trained_run.hypernetwork_dir)
    files = {p.name: p.read_bytes() for p in Path(hyper_dir).iterdir() if p.is_file()}
    weights = files["model.safetensors"]

    # 1. Push: the CLI to main (creating a private repo), the Python API to a branch.
    pushed = _run_steps(
        [
            cli("push_main", "push", hyper_dir, HYPER, "--private", "--commit-message", "first hypernetwork"),
            py(
                "push_branch",
                PERTURB + f"result = perturbed({hyper_dir!r}).push_to_hub({HYPER!r}, revision='exp')",
            ),
            py(
                "push_without_token",
                f"""
from hyperadapt.errors import HyperAdaptError
from hyperadapt.hub import push_folder
try:
    result = push_folder({hyper_dir!r}, "tester/anonymous", token=False)
except HyperAdaptError as err:
    result = str(err)
""",
            ),
        ],
        _env(hub, work / "pusher"),
        work,
        "push",
    )

    # Repositories that are broken in one way each, put straight into the test Hub.
    hub.add_files("tester/no-weights", {"config.json": files["config.json"]})
    hub.add_files(
        "tester/pickled", {"config.json": files["config.json"], "pytorch_model.bin": b"\x80\x04pickle"}
    )
    hub.add_files("tester/not-a-hypernet", {"README.md": b"# nothing here\n"})
    hub.add_files("tester/config-not-json", {**files, "config.json": b"{oops"})
    hub.add_files("tester/config-a-list", {**files, "config.json": b"[1]"})
    for name in ("truncated", "flipped", "short-body", "down"):
        hub.add_files(f"tester/{name}", files)
    hub.add_files("tester/stored-truncated", {**files, "model.safetensors": weights[: len(weights) // 2]})
    hub.faults[("tester/truncated", "model.safetensors")] = Fault(truncate=len(weights) // 2)
    hub.faults[("tester/flipped", "model.safetensors")] = Fault(flip_byte=len(weights) - 5)
    hub.faults[("tester/short-body", "model.safetensors")] = Fault(short_body=100)
    hub.faults[("tester/down", "*")] = Fault(drop=True)

    # 2. Pull in a fresh process with an empty cache.
    out = work / "out"
    closed_port = """
import socket
from huggingface_hub import constants
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
constants.ENDPOINT = f"http://127.0.0.1:{port}"
constants.HUGGINGFACE_CO_URL_TEMPLATE = constants.ENDPOINT + "/{repo_id}/resolve/{revision}/{filename}"
"""
    pulled = _run_steps(
        [
            cli(
                "generate",
                "generate",
                HYPER,
                "--task",
                "single",
                "--out",
                str(out / "main"),
                "--push-to-hub",
                ADAPTER,
            ),
            cli(
                "generate_exp",
                "generate",
                HYPER,
                "--revision",
                "exp",
                "--task",
                "single",
                "--out",
                str(out / "exp"),
            ),
            py(
                "revisions",
                PERTURB
                + f"""
from hyperadapt.hypernetwork import HyperNetwork
main, exp = HyperNetwork.from_pretrained({HYPER!r}), HyperNetwork.from_pretrained({HYPER!r}, revision="exp")
result = {{
    "main_is_local": same_weights(main, load_hypernetwork({hyper_dir!r})),
    "exp_is_perturbed": same_weights(exp, perturbed({hyper_dir!r})),
    "commits": [main.hub_ref["commit"], exp.hub_ref["commit"]],
}}
""",
            ),
            cli("missing_repo", "generate", "tester/nope", "--task", "single", "--out", str(out / "x1")),
            cli("missing_revision", "eval", HYPER, "--revision", "v9", "--task", "single"),
            cli(
                "missing_file", "generate", "tester/no-weights", "--task", "single", "--out", str(out / "x2")
            ),
            cli("pickled", "generate", "tester/pickled", "--task", "single", "--out", str(out / "x3")),
            cli("not_a_hypernet", "eval", "tester/not-a-hypernet", "--task", "single"),
            cli("adapter_repo", "generate", ADAPTER, "--task", "single", "--out", str(out / "x4")),
            cli("truncated", "generate", "tester/truncated", "--task", "single", "--out", str(out / "x5")),
            cli("flipped", "generate", "tester/flipped", "--task", "single", "--out", str(out / "x6")),
            cli("short_body", "generate", "tester/short-body", "--task", "single", "--out", str(out / "x7")),
            cli(
                "stored_truncated",
                "generate",
                "tester/stored-truncated",
                "--task",
                "single",
                "--out",
                str(out / "x8"),
            ),
            cli("dropped", "generate", "tester/down", "--task", "single", "--out", str(out / "x9")),
            cli("config_not_json", "eval", "tester/config-not-json", "--task", "single"),
            cli("config_a_list", "eval", "tester/config-a-list", "--task", "single"),
            *[
                cli(
                    name,
                    "generate",
                    HYPER,
                    "--task",
                    "single",
                    "--out",
                    str(out / name),
                    "--push-to-hub",
                    bad,
                )
                for name, bad in (("push_to_bad_id", "bad id"), ("push_to_deep_id", "a/b/c"))
            ],
            py(
                "anonymous_private",
                f"""
from hyperadapt.errors import HyperAdaptError
from hyperadapt.hypernetwork import HyperNetwork
try:
    HyperNetwork.from_pretrained({HYPER!r}, token=False)
    result = "loaded"
except HyperAdaptError as err:
    result = str(err)
""",
            ),
            py(
                "offline",
                f"""
from huggingface_hub import constants
from hyperadapt.errors import HyperAdaptError
from hyperadapt.hypernetwork import HyperNetwork
constants.HF_HUB_OFFLINE = True
result = {{"cached": HyperNetwork.from_pretrained({HYPER!r}).task_names}}
try:
    HyperNetwork.from_pretrained("tester/flipped")
except HyperAdaptError as err:
    result["uncached"] = str(err)
constants.HF_HUB_OFFLINE = False
""",
            ),
            py(
                "connection_refused",
                closed_port
                + f"""
from hyperadapt.errors import HyperAdaptError
from hyperadapt.hypernetwork import HyperNetwork
result = {{"cached": HyperNetwork.from_pretrained({HYPER!r}).task_names}}
try:
    HyperNetwork.from_pretrained("tester/pickled")
except HyperAdaptError as err:
    result["uncached"] = str(err)
""",
            ),
        ],
        _env(hub, work / "puller"),
        work,
        "pull",
    )

    # 3. The pushed adapter with nothing but transformers and peft.
    proc = subprocess.run(
        [sys.executable, "-c", PEFT_FROM_HUB, _base_path(trained_run), ADAPTER, json.dumps(SENTENCES)],
        env={**_env(hub, work / "peft"), "PYTHONPATH": ""},
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return {"pushed": pushed, "pulled": pulled, "peft": proc, "out": out, "work": work}


def _base_path(trained_run) -> str:
    return json.loads((trained_run.hypernetwork_dir / "config.json").read_text())["base_model"]


def _ok(record: dict) -> None:
    assert record.get("rc", 0) == 0 and "exception" not in record, record


def _one_error_line(record: dict) -> str:
    """A user error: exit status 2 and exactly one line ``hyperadapt: error: ...``, no traceback."""
    assert record.get("rc") == 2, record
    assert "Traceback" not in record["stderr"], record["stderr"]
    errors = [line for line in record["stderr"].splitlines() if line.startswith("hyperadapt: error:")]
    assert len(errors) == 1, record["stderr"]
    return errors[0]


def test_push_creates_the_repository_with_config_weights_vocabularies_and_card(session, hub, trained_run):
    _ok(session["pushed"]["push_main"])
    assert session["pushed"]["push_main"]["stdout"].strip().startswith(f"{hub.endpoint}/{HYPER}/commit/")
    repo = hub.repos[HYPER]
    assert repo.private
    files = hub.files(HYPER)
    assert {"config.json", "model.safetensors", "hyperadapt.json", "recipe.yaml", "README.md"} <= set(files)
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert files["model.safetensors"] == (trained_run.hypernetwork_dir / "model.safetensors").read_bytes()
    assert repo.commits[repo.branches["main"]].message == "first hypernetwork"
    manifest = json.loads(files["hyperadapt.json"])
    assert manifest["vocabularies"] == {"tasks": ["single", "pair", "score"], "languages": ["en"]}
    assert manifest["base_model"]["id"] == _base_path(trained_run)
    assert "revision" in manifest["base_model"]
    assert hub.unhandled == []


def test_push_without_a_token_is_a_clear_error(session, hub):
    record = session["pushed"]["push_without_token"]
    _ok(record)
    assert record["value"].startswith("the Hub refused to push tester/anonymous (401 unauthorized")
    assert "hf auth login" in record["value"] and "tester/anonymous" not in hub.repos


def test_pushed_card_lists_tasks_metrics_recipe_and_usage(session, hub, trained_run):
    from huggingface_hub import ModelCard

    card = ModelCard(hub.files(HYPER)["README.md"].decode())
    assert card.data.library_name == "hyperadapt"
    assert {"hyperadapt", "hypernetwork", "lora"} <= set(card.data.tags)
    assert card.data.language == ["en"]
    results = {(r.dataset_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    expected = {
        (task, metric): round(value, 4)
        for task, values in trained_run.metrics.items()
        for metric, value in values.items()
        if isinstance(value, float)
    }
    assert results == expected and ("single", "accuracy") in results
    assert all(r.dataset_split == "validation" for r in card.data.eval_results)
    text = card.text
    for needle in ("| single |", "| pair |", "| score |", "rank 4", "```yaml", "max_steps: 6"):
        assert needle in text, needle
    assert f"hyperadapt generate {HYPER} --task single" in text
    assert f'HyperNetwork.from_pretrained("{HYPER}")' in text


def test_pull_by_repo_id_in_a_fresh_process_generates_the_local_adapter(session, trained_run, tmp_path):
    from safetensors.torch import load_file

    from hyperadapt.export import export_adapter
    from hyperadapt.runtime import load_hypernetwork

    _ok(session["pulled"]["generate"])
    remote = session["out"] / "main"
    local = export_adapter(load_hypernetwork(trained_run.hypernetwork_dir), "single", tmp_path / "local")
    got, want = (
        load_file(remote / "adapter_model.safetensors"),
        load_file(local / "adapter_model.safetensors"),
    )
    assert got.keys() == want.keys() and len(got) > 4
    for key in want:
        assert torch.equal(got[key], want[key]), key
    info = json.loads((remote / "hyperadapt_task.json").read_text())
    assert info["hypernetwork"] == HYPER
    assert info["metrics"]["accuracy"] == pytest.approx(trained_run.metrics["single"]["accuracy"], abs=1e-4)


def test_branch_push_and_revision_load(session, hub):
    from safetensors.torch import load_file

    _ok(session["pushed"]["push_branch"])
    repo = hub.repos[HYPER]
    assert set(repo.branches) == {"main", "exp"}
    assert hub.files(HYPER, "exp")["model.safetensors"] != hub.files(HYPER, "main")["model.safetensors"]
    revisions = session["pulled"]["revisions"]
    _ok(revisions)
    assert revisions["value"]["main_is_local"] and revisions["value"]["exp_is_perturbed"]
    assert revisions["value"]["commits"] == [repo.branches["main"], repo.branches["exp"]]
    _ok(session["pulled"]["generate_exp"])
    main = load_file(session["out"] / "main" / "adapter_model.safetensors")
    exp = load_file(session["out"] / "exp" / "adapter_model.safetensors")
    assert any(not torch.equal(main[k], exp[k]) for k in main if "lora_A" in k)


def test_pushed_adapter_is_a_peft_repository_that_plain_peft_loads(session, hub, trained_run):
    from huggingface_hub import ModelCard

    from hyperadapt.runtime import Runtime, load_hypernetwork

    files = hub.files(ADAPTER)
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(files)
    card = ModelCard(files["README.md"].decode())
    assert card.data.library_name == "peft"
    assert {"peft", "lora", "hyperadapt"} <= set(card.data.tags)
    assert "`tester/hyper`" in card.text and "the task name `single`" in card.text
    assert f'PeftModel.from_pretrained(base, "{ADAPTER}")' in card.text
    assert "accuracy" in card.text  # the metrics recorded with the hypernetwork

    proc = session["peft"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.tensor(json.loads(proc.stdout.strip().splitlines()[-1]))
    hypernet = load_hypernetwork(trained_run.hypernetwork_dir)
    runtime = Runtime(hypernet)
    inputs = dict(runtime.tokenizer(SENTENCES, return_tensors="pt", padding=True))
    with torch.no_grad():
        expected = runtime.adapted(*hypernet("single"), **inputs)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "step, message",
    [
        ("missing_repo", r"repository tester/nope was not found on the Hub at http://127\.0\.0\.1:\d+"),
        ("missing_revision", r"tester/hyper has no revision 'v9'"),
        ("missing_file", r"tester/no-weights has no model\.safetensors"),
        ("pickled", r"tester/pickled offers only pickled weights \(pytorch_model\.bin\); .*safetensors only"),
        ("not_a_hypernet", r"tester/not-a-hypernet has no config\.json: it is not a hyperadapt hypernetwork"),
        ("adapter_repo", r"tester/adapter-single is a peft adapter repository, not a hypernetwork"),
        (
            "truncated",
            r"download of tester/truncated: model\.safetensors is corrupt or truncated \(\d+ bytes",
        ),
        (
            "flipped",
            r"download of tester/flipped: model\.safetensors is corrupt or truncated \(its git blob id",
        ),
        ("short_body", r"download of tester/short-body .*was truncated"),
        ("stored_truncated", r"tester/stored-truncated.*model\.safetensors is corrupt or truncated"),
        ("dropped", r"cannot download tester/down: network error talking to http://127\.0\.0\.1:\d+"),
        ("config_not_json", r"tester/config-not-json/config\.json is not valid JSON"),
        ("config_a_list", r"tester/config-a-list/config\.json is not a JSON object"),
        ("push_to_bad_id", r"cannot push to 'bad id': it is not a valid Hub repo id"),
        ("push_to_deep_id", r"cannot push to 'a/b/c': it is not a valid Hub repo id"),
    ],
)
def test_hub_errors_are_one_clear_line(session, step, message):
    import re

    line = _one_error_line(session["pulled"][step])
    assert re.search(message, line), line
    assert not (session["out"] / step).exists()  # nothing generated when the push target is bad


def test_nothing_pickled_or_corrupt_is_kept(session, hub):
    fetched = {path for method, path in hub.log if method == "GET" and "/resolve/" in path}
    assert not [p for p in fetched if p.endswith("pytorch_model.bin")]
    assert not any(
        p.startswith(("/tester/no-weights/", "/tester/pickled/")) for p in fetched if "safetensors" in p
    )
    cache = session["work"] / "puller" / "hf" / "hub"
    for name in ("truncated", "flipped"):
        snapshot = next((cache / f"models--tester--{name}" / "snapshots").iterdir())
        assert not (snapshot / "model.safetensors").exists()
    assert hub.unhandled == []


def test_private_offline_and_unreachable_hub(session):
    private = session["pulled"]["anonymous_private"]
    _ok(private)
    assert "tester/hyper was not found" in private["value"] and "private" in private["value"]
    offline = session["pulled"]["offline"]
    _ok(offline)
    assert offline["value"]["cached"] == ["single", "pair", "score"]
    assert "HF_HUB_OFFLINE is set" in offline["value"]["uncached"]
    refused = session["pulled"]["connection_refused"]
    _ok(refused)
    assert refused["value"]["cached"] == ["single", "pair", "score"]
    assert "cannot download tester/pickled: network error" in refused["value"]["uncached"]


# -- no network --------------------------------------------------------------------------------


def test_training_writes_the_card_with_validation_metrics(trained_run):
    from hyperadapt.cards import card_metrics

    folder = trained_run.hypernetwork_dir
    assert (folder / "README.md").is_file() and (folder / "hyperadapt.json").is_file()
    recorded = card_metrics(folder)
    assert set(recorded) == {"single", "pair", "score"}
    for task, values in trained_run.metrics.items():
        for metric, value in values.items():
            if isinstance(value, float):
                assert recorded[task][metric] == pytest.approx(value, abs=1e-4)
    text = (folder / "README.md").read_text()
    assert "majority baseline" in text and f"(step {trained_run.best_step})" in text


def test_adapter_card_for_push_names_a_hub_base_model(trained_run, tmp_path):
    from hyperadapt.cards import adapter_card_for_push

    folder = tmp_path / "adapter"
    shutil.copytree(trained_run.adapter_dirs["single"], folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "sentence-transformers/all-MiniLM-L6-v2"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    card = adapter_card_for_push(folder, "me/single-adapter")
    assert card.data.library_name == "peft"
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert {"peft", "lora", "hyperadapt"} <= set(card.data.tags)
    assert "me/single-adapter" in card.text and "PATH_OR_REPO_OF_THIS_ADAPTER" not in card.text


def test_pushing_a_pickled_adapter_is_refused(tmp_path):
    from hyperadapt.hub import push_folder

    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(HyperAdaptError, match=r"only pickled weights \(adapter_model\.bin\)"):
        push_folder(folder, "me/adapter")


def test_verify_download_drops_a_file_that_does_not_match(tmp_path):
    from hyperadapt.hub import verify_download

    from .hub_server import git_blob_sha1

    good = tmp_path / "good"
    good.write_bytes(b"weights")
    verify_download(good, git_blob_sha1(b"weights"), 7, "r: good")
    bad = tmp_path / "bad"
    bad.write_bytes(b"weighs")
    with pytest.raises(HyperAdaptError, match="corrupt or truncated"):
        verify_download(bad, git_blob_sha1(b"weights"), None, "r: bad")
    assert not bad.exists()


def test_export_refuses_a_base_model_other_than_the_trained_one(trained_run, tmp_path):
    from hyperadapt.export import export_adapter
    from hyperadapt.runtime import load_hypernetwork

    from .conftest import make_tiny_bert

    other = make_tiny_bert(tmp_path / "wider_bert", hidden=48)
    copy = tmp_path / "hypernetwork"
    shutil.copytree(trained_run.hypernetwork_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["base_model"] = str(other)
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(HyperAdaptError, match=r"hidden 32.*is bert with hidden 48"):
        export_adapter(load_hypernetwork(copy), "single", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_base_model_code_from_a_repository_never_runs(tmp_path):
    from hyperadapt.base_model import load_sequence_classifier

    folder = tmp_path / "remote_code_model"
    folder.mkdir()
    marker = tmp_path / "code_ran"
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "evil-model",
                "auto_map": {
                    "AutoConfig": "evil.EvilConfig",
                    "AutoModelForSequenceClassification": "evil.EvilModel",
                },
            }
        )
    )
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    with pytest.raises(HyperAdaptError, match="cannot load base model"):
        load_sequence_classifier(str(folder))
    assert not marker.exists()
