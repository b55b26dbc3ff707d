"""Run configs as a careless user or an attacker writes them, through the one strict schema (`kd_analysis.schema`):
a string is never a bool, numbers are finite, unknown keys are refused, and each refusal is one sentence naming
the field, on the CLI too (exit 2, no traceback)."""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml

from kd_analysis.exceptions import KDLensError
from kd_analysis.models.specs import ModelSpec
from kd_analysis.training.config import TrainConfig
from tests.helpers.cli import cli

BASE = "teacher: {source: minilm}\n"


@pytest.mark.parametrize("written", ['"false"', '"no"', '"0"', "0", "1", '"true"'])
def test_trust_remote_code_written_as_anything_but_a_bool_is_refused(written):
    with pytest.raises(KDLensError, match=r"config\.teacher\.trust_remote_code must be true or false"):
        TrainConfig.from_dict(yaml.safe_load(f"teacher: {{source: x, trust_remote_code: {written}}}\n"))
    with pytest.raises(KDLensError, match=r"student\.model\.trust_remote_code must be true or false"):
        TrainConfig.from_dict(
            yaml.safe_load(BASE + f"student: {{kind: model, model: {{source: y, trust_remote_code: {written}}}}}\n")
        )


def test_a_string_false_never_runs_a_model_folders_code(tmp_path):
    """The defect as found: a folder whose config.json names Python in `auto_map`, a run config saying
    `trust_remote_code: "false"`; the run is refused before anything loads, and the folder's code never runs."""
    model = tmp_path / "model"
    model.mkdir()
    marker = tmp_path / "ran"
    model.joinpath("config.json").write_text(
        json.dumps({"model_type": "x_arch", "architectures": ["X"], "auto_map": {"AutoConfig": "conf_x.C"}})
    )
    model.joinpath("conf_x.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = tmp_path / "run.yaml"
    config.write_text(f"teacher: {{source: {model}, trust_remote_code: 'false'}}\nsteps: 1\n")
    res = cli("train", "--config", str(config), "--root", str(tmp_path / "runs"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "trust_remote_code must be true or false (got 'false')" in res.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "text,words",
    [
        ("steps: .inf", "config.steps must be a whole number (got inf)"),
        ("steps: 1.5", "config.steps must be a whole number (got 1.5)"),
        ("lora: 'yes'", "config.lora must be a mapping of settings (got 'yes')"),
        ("seed: abc", "config.seed must be a whole number (got 'abc')"),
        ("weight_decay: .nan", "config.weight_decay must be a finite number"),
        ("losses: [{name: kl, weight: .nan}]", "config.losses.0.weight must be a finite number"),
        ("losses: [{name: kl, weight: .inf}]", "config.losses.0.weight must be a finite number"),
        ("losses: [{name: kl, weight: 0}, {name: ce, weight: 0}]", "every loss weight is 0"),
        ("tau_squared: 'false'", "config.tau_squared must be true or false (got 'false')"),
        ("save_checkpoint: 1", "config.save_checkpoint must be true or false (got 1)"),
        ("student: abc", "config.student must be a mapping of settings (got 'abc')"),
        ("student: {num_layers: 0}", "student.num_layers (null for the default) must be a positive whole number"),
        ("student: {extra: 5}", "config.student.extra must be a mapping of settings (got 5)"),
        ("train_size: -1", "train_size (training examples; null for all) must be a positive whole number"),
        ("colour: red", "config.colour is not a known setting"),
        ("on_policy: {fraction: 0.5, top_k: '0'}", "config.on_policy.top_k must be a whole number (got '0')"),
        # values beyond their types, as a hostile-input sweep found them accepted (two crashed a run mid-way)
        ("lora: {r: -1}", "lora.r must be a positive whole number"),
        ("lora: {dropout: 5.0}", "lora.dropout must be in [0, 1)"),
        ("lora: {target_modules: []}", "lora.target_modules must name modules"),
        ("seed: 1000000000000000000000000000000", "seed must be between 0 and 2³² − 1"),
        ("student: {seed: -1}", "student.seed must be between 0 and 2³² − 1"),
        ("device: banana", "device must be auto, cpu, cuda or cuda:N (got 'banana')"),
        ("data: ''", "data is empty"),
        ("weight_decay: -5", "weight_decay must be ≥ 0"),
        ("warmup_steps: -10", "warmup_steps must be a whole number ≥ 0"),
        ("max_new_tokens: -1", "max_new_tokens must be a positive whole number"),
        ("steps: 1000000000000", "steps must be at most 1,000,000,000"),
        ("report_to: [wandb-evil]", "report_to names 'wandb-evil'"),
        ("losses: [{name: sinkhorn, params: {bogus: 1}}]", "sinkhorn has no parameter 'bogus'"),
        ("losses: [{name: kl, params: {tail_bucket: true}}]", "kl has no parameter 'tail_bucket'"),
        ("kind: rationales", "this is a 'rationales' run's config, not a training config"),
        ("lr: 1.0e+308", "lr must be at most 10 (got 1e+308)"),
        ("tau: 1.0e+300", "tau must be at most 1000"),
        ("losses: [{name: kl, weight: 1.0e+300}]", "the kl term's weight must be at most 1e6"),
        ("group: ../../evil", "group must be an id of letters, digits"),
        # the sinkhorn term's settings beyond ε and iterations, checked when read, not at the first step
        ("losses: [{name: sinkhorn, params: {first: diagonal}}]", "sinkhorn's first must be one of columns, rows"),
        ("losses: [{name: sinkhorn, params: {mass: all}}]", "sinkhorn's mass must be one of one, batch"),
        ("losses: [{name: sinkhorn, params: {cost: l7}}]", "sinkhorn's cost must be one of l1, l2"),
        ("losses: [{name: sinkhorn, params: {gradient: 1}}]", "sinkhorn's gradient must be one of unrolled"),
        ("losses: [{name: sinkhorn, params: {domain: exp}}]", "sinkhorn's domain must be one of auto, log"),
        ("losses: [{name: sinkhorn, params: {topk: 0}}]", "sinkhorn's topk must be a whole number from 1"),
        ("losses: [{name: sinkhorn, params: {group_size: '8'}}]", "sinkhorn's group_size must be a whole number"),
        ("losses: [{name: sinkhorn, params: {scale: -1}}]", "sinkhorn's scale must be a number in (0, 1e6]"),
        ("losses: [{name: sinkhorn, params: {scale: true}}]", "sinkhorn's scale must be a number in (0, 1e6]"),
    ],
)
def test_bad_settings_are_one_sentence_naming_the_field(text, words):
    with pytest.raises(KDLensError) as caught:
        TrainConfig.from_dict(yaml.safe_load(BASE + text + "\n"))
    assert words in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "teacher,words",
    [
        ("5", "config.teacher must be a mapping of settings (got 5)"),
        ("null", "config.teacher must be a mapping"),
        ("{source: minilm, dtype: float7}", "teacher.dtype must be one of auto, float32, bfloat16, float16"),
        ("{source: minilm, task: poetry}", "teacher.task must be one of"),
        ("{source: minilm, device: banana}", "teacher.device must be auto, cpu, cuda or cuda:N"),
        ("{source: ''}", "teacher.source is empty"),
    ],
)
def test_a_teacher_that_is_not_a_model_is_refused(teacher, words):
    with pytest.raises(KDLensError, match=words.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig.from_dict(yaml.safe_load(f"teacher: {teacher}\n"))


def test_model_specs_refuse_unknown_keys_and_wrong_types():
    assert ModelSpec.from_dict({"source": "x", "trust_remote_code": True}).trust_remote_code is True
    for bad, words in [
        ({"source": "x", "trust_remote_code": "false"}, "model.trust_remote_code must be true or false"),
        ({"source": "x", "revison": "main"}, "model.revison is not a known setting"),
        ({"source": 5}, "model.source must be text (got 5)"),
        ({}, "model.source is required"),
    ]:
        with pytest.raises(KDLensError) as caught:
            ModelSpec.from_dict(bad)
        assert words in str(caught.value)


def test_a_yaml_alias_bomb_is_refused_at_once_wherever_it_sits(tmp_path):
    """Nine levels of nine aliases under a field nobody reads (`student.extra`): 9⁹ values once expanded."""
    levels = "".join(
        f"    {name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi")
    )
    path = tmp_path / "bomb.yaml"
    path.write_text(BASE + "student:\n  extra:\n    a: &a [x, x, x, x, x, x, x, x, x]\n" + levels)
    started = time.monotonic()
    with pytest.raises(KDLensError, match="expands to more than 100,000 values through its YAML aliases"):
        TrainConfig.load(path)
    assert time.monotonic() - started < 30  # refused from the node graph, never expanded (a hang without it)
    res = cli("train", "--config", str(path))
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_files_that_are_not_configs_get_a_sentence(tmp_path):
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    for path, words in [(binary, "is not UTF-8 text"), (tmp_path, "is not a file")]:
        with pytest.raises(KDLensError, match=words):
            TrainConfig.load(path)
        res = cli("train", "--config", str(path))
        assert res.returncode == 2 and words in res.stderr and "Traceback" not in res.stderr


def test_every_shipped_run_config_still_parses():
    """The strict schema reads every stored training config the demo ships (nothing it wrote is now refused)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "cached_runs"
    configs = [json.loads(p.read_text()) for p in sorted(root.glob("*/config.json"))]
    trains = [c for c in configs if c.get("kind") == "train"]
    assert len(trains) >= 10
    for c in trains:
        TrainConfig.from_dict(c)


@pytest.mark.parametrize(
    "name,text,words",
    [
        ("dup.yaml", "teacher: minilm\nsteps: 2\nsteps: 3\n", "the YAML names 'steps' twice in one mapping"),
        ("dup.json", '{"teacher": "minilm", "steps": 9, "steps": 2}', "the JSON names 'steps' twice in one object"),
        ("bad.YAML", "teacher: [unclosed\n", "bad.YAML is not valid YAML"),
    ],
)
def test_a_key_named_twice_is_refused_not_last_one_wins(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(KDLensError, match=re.escape(words)):
        TrainConfig.load(path)


@pytest.mark.parametrize(
    "line,field,value",
    [
        # YAML 1.1, which PyYAML's safe_load follows, reads each of these as something else
        ("name: no", "name", "no"),  # 1.1: false (then refused as a name that is not text)
        ("name: 1:30", "name", "1:30"),  # 1.1: 90, in base 60
        ("name: 2026-01-01", "name", "2026-01-01"),  # 1.1: a date
        ("lr: 1e-5", "lr", 1e-5),  # 1.1: the string "1e-5" (no dot), refused as not a number
        ("seed: 010", "seed", 10),  # 1.1: 8, in octal
        ("seed: 0x10", "seed", 16),
        ("tau_squared: false", "tau_squared", False),
        ("tau_squared: True", "tau_squared", True),
    ],
)
def test_config_files_are_read_as_yaml_1_2(tmp_path, line, field, value):
    path = tmp_path / "run.yaml"
    path.write_text(BASE + line + "\n")
    assert getattr(TrainConfig.load(path), field) == value


@pytest.mark.parametrize("word", ["yes", "on", "y", "off"])
def test_yaml_1_1_booleans_are_text_so_a_bool_setting_refuses_them(tmp_path, word):
    path = tmp_path / "run.yaml"
    path.write_text(BASE + f"tau_squared: {word}\n")
    with pytest.raises(KDLensError, match=f"config.tau_squared must be true or false \\(got '{word}'\\)"):
        TrainConfig.load(path)


def test_the_sinkd_settings_still_parse():
    from kd_analysis.training.presets import SINKD_SINKHORN

    cfg = TrainConfig.from_dict(yaml.safe_load(BASE) | {"losses": [{"name": "sinkhorn", "params": SINKD_SINKHORN}]})
    assert cfg.losses[0].params["first"] == "rows"
