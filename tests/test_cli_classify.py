"""`sporep-hpc classify`: every command-line option reaches the ClassifierConfig it builds."""

import sporep_hpc.analysis.classify as cl
from sporep_hpc.cli import main
from sporep_hpc.errors import InputError


def test_options_reach_the_config(monkeypatch):
    seen = {}

    def fake_classify_store(store, fingerprint, labels, name, config, save, where, mix_kinds):
        seen.update(store=store, fingerprint=fingerprint, labels=labels, name=name, config=config, save=save,
                    where=where, mix_kinds=mix_kinds)
        raise InputError("stand-in: stop after reading the arguments")

    monkeypatch.setattr(cl, "classify_store", fake_classify_store)
    args = ["classify", "s.h5", "--labels", "l.csv", "--fingerprint", "kinetic", "--trees", "7",
            "--max-depth", "3", "--folds", "4", "--seed", "11", "--balancing", "none", "--repeats", "2",
            "--groups", "9", "--jobs", "2", "--no-save", "--where", "diameter>=6", "--mix-kinds"]  # fmt: skip
    assert main(args) == InputError.exit_code
    c = seen["config"]
    assert (c.n_estimators, c.max_depth, c.cv_folds, c.seed, c.balancing) == (7, 3, 4, 11, "none")
    assert (c.n_repeats, c.permutation_groups, c.n_jobs) == (2, 9, 2)
    assert (seen["store"], seen["fingerprint"], seen["labels"]) == ("s.h5", "kinetic", "l.csv")
    assert seen["name"] == "kinetic"  # default model name: the fingerprint's
    assert seen["save"] is False
    assert seen["where"] == "diameter>=6" and seen["mix_kinds"] is True
