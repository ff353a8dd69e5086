"""`prefaudit train` options come from TrainConfig and are checked before anything loads."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from prefaudit.cli import build_parser, main
from prefaudit.errors import ConfigError
from prefaudit.train.config import TrainConfig, check_options_apply, cli_fields

#: A data file and a model that do not exist: a bad option must be reported before either is touched.
BASE = ["train", "no_such_data.jsonl", "--model", "no_such_model", "--output-dir", "out"]


@pytest.mark.parametrize("extra, named", [
    (["--steps", "0"], "max_steps (--steps): expected an integer >= 1, got 0"),
    (["--steps", "-1"], "max_steps (--steps): expected an integer >= 1, got -1"),
    (["--batch-size", "0"], "batch_size (--batch-size): expected an integer >= 1, got 0"),
    (["--max-length", "0"], "max_length (--max-length): expected an integer >= 1, got 0"),
    (["--seed", "-1"], "seed (--seed): expected an integer in [0, 4294967295], got -1"),
    (["--seed", str(2**32)], "seed (--seed): expected an integer in [0, 4294967295], got 4294967296"),
    (["--beta", "0"], "beta (--beta): expected a number > 0, got 0.0"),
    (["--beta", "nan"], "beta (--beta): expected a finite number, got nan"),
    (["--learning-rate=-1e-5"], "learning_rate (--learning-rate): expected a number > 0"),
    (["--backend", "trl", "--loss", "cdpo"], "backend 'trl': TRL's DPOTrainer has no 'cdpo' loss"),
    (["--loss", "length_reg"], "loss 'length_reg' needs alpha > 0 (--alpha)"),
    (["--alpha", "-0.1", "--loss", "length_reg"], "alpha (--alpha): expected a number >= 0"),
    (["--alpha", "0.1"], "--alpha applies to --loss length_reg only, not 'sigmoid'"),
    (["--nll-weight", "2", "--loss", "ipo"], "--nll-weight applies to --loss cpo only, not 'ipo'"),
])
def test_bad_train_options_exit_2_with_one_line_before_loading(extra, named, capsys):
    assert main([*BASE, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("prefaudit: error: ") and named in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_argparse_rejects_non_numbers_and_unknown_choices_with_exit_2(capsys):
    for extra in (["--steps", "ten"], ["--precision", "fp16"], ["--loss", "dpo"]):
        with pytest.raises(SystemExit) as stop:
            main([*BASE, *extra])
        assert stop.value.code == 2
        assert "Traceback" not in capsys.readouterr().err


def test_options_and_defaults_are_generated_from_train_config():
    parser = build_parser()
    args = parser.parse_args(BASE)
    config = TrainConfig()
    for name, _flag, default, help_text, _ in cli_fields():
        assert getattr(args, name) == default == getattr(config, name)
        assert f"default {default}" in help_text
    help_text = subparser_help(parser, "train")
    flags = {flag for _, flag, *_ in cli_fields()}
    assert flags == {"--loss", "--beta", "--alpha", "--nll-weight", "--learning-rate", "--steps",
                     "--batch-size", "--max-length", "--seed", "--backend", "--precision"}
    assert all(f in help_text for f in flags)
    assert "--eps" not in help_text  # the noise rate is --label-noise (a number or 'audit')


def subparser_help(parser, name: str) -> str:
    action = next(a for a in parser._subparsers._group_actions if name in a.choices)
    return action.choices[name].format_help()


def test_alpha_reaches_the_config_that_trains_length_reg():
    from prefaudit.cli import _train_config

    args = build_parser().parse_args([*BASE, "--loss", "length_reg", "--alpha", "0.02", "--steps", "3",
                                      "--seed", "4294967295", "--backend", "own"])
    config = _train_config(args)
    assert (config.loss, config.alpha, config.max_steps, config.seed) == ("length_reg", 0.02, 3, 2**32 - 1)
    assert config.resolved_backend() == "own"


def test_train_config_checks_values_in_python_too():
    with pytest.raises(ConfigError, match="eps: expected a number in \\[0, 0.5\\)"):
        TrainConfig(eps=0.5)
    with pytest.raises(ConfigError, match="max_steps \\(--steps\\): expected an integer, got 2.0"):
        TrainConfig(max_steps=2.0)
    with pytest.raises(ConfigError, match="expected an integer, got True"):
        TrainConfig(batch_size=True)
    with pytest.raises(ConfigError, match="precision \\(--precision\\): expected one of fp32, bf16"):
        TrainConfig(precision="fp16")
    ok = TrainConfig(loss="robust", eps=0.2, beta=1)  # an int is a fine float
    assert dataclasses.replace(ok, eps=0.1).eps == 0.1
    check_options_apply(TrainConfig(loss="cpo", nll_weight=0.5))
    assert TrainConfig(loss="cpo").resolved_backend() == "own" and TrainConfig().resolved_backend() == "trl"


def test_the_command_line_builds_without_importing_torch():
    code = ("import sys; from prefaudit.cli import build_parser; build_parser().parse_args("
            "['train', 'd', '--model', 'm', '--output-dir', 'o']); print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
