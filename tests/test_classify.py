"""Random-forest screening: metrics against scikit-learn's own CV tools, importances, store round trip."""

import json

import numpy as np
import pytest

from sporep_hpc.analysis import classify as cl
from sporep_hpc.errors import InputError, ParameterError

# small forests keep the suite fast; the checks below do not depend on the forest size
FAST = cl.ClassifierConfig(n_estimators=25, cv_folds=4, n_repeats=3, seed=3, train_sizes=(0.5, 1.0))


def _two_class_data(rng, n=48, f=20, informative=7, imbalance=0.25):
    """Class 1 has a 6-sigma bump on feature `informative`; the rest is noise. ~25 % minority class."""
    y = (rng.random(n) < imbalance).astype(int)
    y[:3], y[3:6] = 1, 0  # both classes present with >= 3 members
    x = rng.normal(0.0, 1.0, size=(n, f))
    x[:, informative] += 6.0 * y
    labels = np.where(y == 1, "metallic", "semiconducting")
    return x, labels, np.linspace(0.0, 10.0, f)


def test_metrics_match_sklearn_cross_validation(rng):
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, make_scorer
    from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_validate

    x, labels, e = _two_class_data(rng)
    res = cl.evaluate(x, labels, e, FAST)
    classes, y = np.unique(labels, return_inverse=True)
    assert res.classes == tuple(classes)
    # reference: scikit-learn's own CV drivers with the same estimator and the same folds
    cv = StratifiedKFold(FAST.cv_folds, shuffle=True, random_state=FAST.seed)
    est = cl.make_estimator(FAST)
    ref = cross_validate(
        est, x, y, cv=cv,
        scoring={
            "accuracy": "accuracy",
            "balanced_accuracy_adjusted": make_scorer(balanced_accuracy_score, adjusted=True),
            "f1": "f1_macro", "precision": "precision_macro", "recall": "recall_macro", "roc_auc": "roc_auc",
        },
    )
    for key in ("accuracy", "balanced_accuracy_adjusted", "f1", "precision", "recall", "roc_auc"):
        np.testing.assert_allclose(res.metrics[key]["folds"], ref[f"test_{key}"], rtol=0, atol=1e-12)
        assert res.metrics[key]["mean"] == pytest.approx(np.mean(ref[f"test_{key}"]), abs=1e-12)
    oof = cross_val_predict(est, x, y, cv=cv)
    np.testing.assert_array_equal(res.confusion, confusion_matrix(y, oof))
    assert res.confusion.sum() == len(y)


def test_separable_signal_and_importances(rng):
    x, labels, e = _two_class_data(rng, n=60)
    res = cl.evaluate(x, labels, e, FAST)
    # a 6-sigma bump on one feature: the classes are separable (overlap ~ erfc(3/√2)/2 ≈ 0.1 %)
    assert res.metrics["balanced_accuracy_adjusted"]["mean"] > 0.8
    assert res.metrics["roc_auc"]["mean"] > 0.95
    # both importances single out the informative feature (index 7 = energy 3.68 eV)
    assert int(np.argmax(res.impurity_importance)) == 7
    assert int(np.argmax(res.permutation_importance)) == 7
    assert res.impurity_importance.sum() == pytest.approx(1.0, abs=1e-9)
    noise = np.delete(res.permutation_importance, 7)
    assert np.all(np.abs(noise) < 0.5 * res.permutation_importance[7])
    lc = res.learning_curve
    assert np.shape(lc["test_scores"]) == (2, res.n_folds)
    # issue 16.3: the learning curve plots the metric the summary prints; its full-size point is the
    # fold's adjusted balanced accuracy itself, and its chance level is 0
    assert (lc["metric"], lc["chance"]) == ("balanced_accuracy_adjusted", 0.0)
    adjusted = np.array(res.metrics["balanced_accuracy_adjusted"]["folds"])
    np.testing.assert_allclose(lc["test_scores"][-1], adjusted, rtol=0, atol=1e-12)
    assert lc["train_sizes"][0] < lc["train_sizes"][1]
    assert res.warnings == ()  # a real signal: no chance warning


def test_random_labels_score_at_chance(rng):
    x = rng.normal(size=(80, 10))
    labels = np.array(["a", "b"] * 40)
    rng.shuffle(labels)
    res = cl.evaluate(x, labels, np.arange(10.0), FAST)
    # no signal: adjusted balanced accuracy is 0 in expectation; 4 folds of 20 give a spread of ~0.2
    assert abs(res.metrics["balanced_accuracy_adjusted"]["mean"]) < 0.35


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_labels_warn(seed, caplog):
    # issue 16.3: a score not better than chance comes with a warning (in the result and the log)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 12))
    labels = rng.choice(["a", "b"], size=40, p=[0.6, 0.4])
    with caplog.at_level("WARNING", logger="sporep_hpc.analysis.classify"):
        res = cl.evaluate(x, labels, np.arange(12.0), FAST)
    assert res.warnings and all("not better than" in w for w in res.warnings)
    assert any("not better than" in r.getMessage() for r in caplog.records)
    assert res.summary()["warnings"] == list(res.warnings)


def test_chance_warnings_rule():
    # mean − std/√n_folds <= chance level warns; the accuracy's level is the majority fraction (30/40)
    def m(mean, std, n=4):
        return {"mean": mean, "std": std, "folds": [mean] * n}

    good = {"accuracy": m(0.9, 0.02), "balanced_accuracy_adjusted": m(0.6, 0.1), "roc_auc": m(0.9, 0.05)}
    assert cl.chance_warnings(good, [30, 10]) == []
    bad_acc = {**good, "accuracy": m(0.76, 0.04)}  # 0.76 − 0.02 = 0.74 <= 0.75
    (w,) = cl.chance_warnings(bad_acc, [30, 10])
    assert w.startswith("accuracy 0.760") and "majority class (0.750)" in w
    bad_auc = {**good, "roc_auc": m(0.55, 0.2)}  # 0.55 − 0.1 <= 0.5
    assert [w.split()[0] for w in cl.chance_warnings(bad_auc, [30, 10])] == ["roc_auc"]
    nan_auc = {**good, "roc_auc": m(float("nan"), float("nan"))}
    assert cl.chance_warnings(nan_auc, [30, 10]) == []


def test_batched_permutation_importance_equals_one_call_per_copy(rng, monkeypatch):
    # reference: the unbatched loop (one predict per permuted copy, permutations drawn in group, then
    # repeat order) with scikit-learn's balanced accuracy; the batched code must give the same numbers
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import balanced_accuracy_score

    from sporep_hpc.analysis.classify import evaluation

    x, labels, _ = _two_class_data(rng, n=30, f=9, informative=2)
    y = (np.asarray(labels) == labels[0]).astype(int)
    est = RandomForestClassifier(20, random_state=0).fit(x, y)
    groups = [np.arange(0, 3), np.arange(3, 6), np.arange(6, 9)]
    ref_rng = np.random.default_rng(5)
    base = balanced_accuracy_score(y, est.predict(x))
    ref = []
    for g in groups:
        drops = []
        for _ in range(4):
            work = x.copy()
            work[:, g] = x[ref_rng.permutation(len(y))][:, g]
            drops.append(base - balanced_accuracy_score(y, est.predict(work)))
        ref.append((np.mean(drops), np.std(drops)))
    for batch_rows in (1, 60, 10**6):  # one group per call, two groups per call, everything at once
        monkeypatch.setattr(evaluation, "_PERMUTATION_BATCH_ROWS", batch_rows)
        mean, std = cl.grouped_permutation_importance(est, x, y, groups, 4, np.random.default_rng(5))
        for g, (rm, rs) in zip(groups, ref, strict=True):
            np.testing.assert_allclose(mean[g], rm, rtol=0, atol=1e-12)
            np.testing.assert_allclose(std[g], rs, rtol=0, atol=1e-12)


def test_automatic_sizes():
    # the rule documented in ClassifierConfig: trees 50 / 100 / 200, repeats 5 then ceil(500 / N)
    assert [cl.auto_trees(n) for n in (10, 100, 101, 1000, 1001)] == [50, 50, 100, 100, 200]
    assert [cl.auto_repeats(n) for n in (10, 100, 101, 250, 5000)] == [5, 5, 5, 2, 1]
    c = cl.ClassifierConfig().for_size(40)
    assert (c.n_estimators, c.n_repeats) == (50, 5)
    assert cl.ClassifierConfig(n_estimators=7, n_repeats=2).for_size(40).n_estimators == 7
    with pytest.raises(ParameterError, match="resolved"):
        cl.make_estimator(cl.ClassifierConfig())


def test_progress_is_logged(rng, caplog):
    x, labels, e = _two_class_data(rng, n=24, f=6, informative=2)
    with caplog.at_level("INFO", logger="sporep_hpc.analysis.classify"):
        cl.evaluate(x, labels, e, FAST)
    text = [r.getMessage() for r in caplog.records]
    assert any("fold 1/4" in t and "ETA" in t for t in text)
    assert any("final model fitted (100 % done" in t for t in text)


def test_deterministic(rng):
    x, labels, e = _two_class_data(rng, n=24, f=6, informative=2)
    a = cl.evaluate(x, labels, e, FAST)
    b = cl.evaluate(x, labels, e, FAST)
    assert a.metrics == b.metrics
    np.testing.assert_array_equal(a.permutation_importance, b.permutation_importance)
    np.testing.assert_array_equal(a.impurity_importance, b.impurity_importance)


def test_multiclass(rng):
    x = rng.normal(size=(45, 6))
    y = np.repeat([0, 1, 2], 15)
    x[np.arange(45), y] += 5.0
    res = cl.evaluate(x, np.array(["x", "y", "z"])[y], np.arange(6.0), FAST)
    assert res.confusion.shape == (3, 3) and res.metrics["roc_auc"]["mean"] > 0.95


def test_evaluate_errors(rng):
    x = rng.normal(size=(6, 3))
    with pytest.raises(ParameterError, match="at least 2 classes"):
        cl.evaluate(x, ["a"] * 6, np.arange(3.0), FAST)
    with pytest.raises(ParameterError, match="at least 2 labelled"):
        cl.evaluate(x, ["a"] * 5 + ["b"], np.arange(3.0), FAST)
    with pytest.raises(ParameterError, match="n_estimators must be"):
        cl.ClassifierConfig(n_estimators=0)
    with pytest.raises(ParameterError, match="balancing must be one of"):
        cl.ClassifierConfig(balancing="smote")


def test_fewer_folds_than_requested(rng, caplog):
    x, labels, e = _two_class_data(rng, n=20)
    labels[:] = "semiconducting"
    labels[:3] = "metallic"  # 3 members: 3 folds, not 4
    res = cl.evaluate(x, labels, e, FAST)
    assert res.n_folds == 3


def test_read_labels(tmp_path):
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("label,id\nmetal,a\ninsulator,b\n")
    assert cl.read_labels(csv_file) == {"a": "metal", "b": "insulator"}
    bare = tmp_path / "bare.csv"
    bare.write_text("a,1\nb,0\n\n")
    assert cl.read_labels(bare) == {"a": "1", "b": "0"}
    js = tmp_path / "labels.json"
    js.write_text(json.dumps([{"id": "a", "label": "x"}, {"id": "b", "label": "y"}]))
    assert cl.read_labels(js) == {"a": "x", "b": "y"}
    js.write_text(json.dumps({"a": 1}))
    assert cl.read_labels(js) == {"a": "1"}
    clash = tmp_path / "clash.csv"
    clash.write_text("id,label\na,1\na,2\n")
    with pytest.raises(InputError, match="two labels"):
        cl.read_labels(clash)
    with pytest.raises(InputError, match="does not exist"):
        cl.read_labels(tmp_path / "none.csv")


def test_property_labels_from_examples():
    labels, source = cl.labels_for_ids(["cnt_5_5", "cnt_8_0", "x"], "property:electronic")
    # (5,5): n - m = 0 -> metallic; (8,0): 8 mod 3 = 2 -> semiconducting (zone folding)
    assert labels == ["metallic", "semiconducting", None] and source == "property:electronic"
    with pytest.raises(InputError, match="no structure"):
        cl.labels_for_ids(["x"], "property:electronic")


# ---- store round trip ---------------------------------------------------------------------------------


def _store(path, x, spec, ids):
    from sporep_hpc.store import FingerprintMeta, StoreHeader, StructureResult, write_store

    rows = [StructureResult(index=i, id=sid, status=1, fingerprints={"fp": v}) for i, (sid, v) in
            enumerate(zip(ids, x, strict=True))]
    header = StoreHeader("{}", "2026-01-01T00:00:00+00:00", 1, "test")
    meta = {"fp": FingerprintMeta(spec.energies, {"spec": spec.to_json()})}
    write_store(path, rows, 0, len(rows), header, meta)
    return path


def test_property_labels_read_from_the_store_first(tmp_path, rng):
    from dataclasses import replace

    import h5py

    from sporep_hpc.fingerprints import FingerprintSpec, Window

    # a store whose rows carry properties: labels come from them, not from the example catalogue
    x, labels, _ = _two_class_data(rng, n=30, f=20)
    spec = FingerprintSpec("fp", (Window("zero", 0.0, 10.0, 20, "gaussian", 0.5),))
    ids = ["cnt_5_5"] + [f"s{i}" for i in range(1, len(x))]  # the catalogue calls cnt_5_5 metallic
    path = _store(tmp_path / "props.h5", x, spec, ids)
    props = [{"kind": str(lab)} for lab in labels]
    props[-1] = {}  # one structure without the property: unlabelled
    from sporep_hpc.store import FingerprintMeta, StoreHeader, StructureResult, write_store

    rows = [
        replace(StructureResult(index=i, id=sid, status=1, fingerprints={"fp": v}), properties=json.dumps(p))
        for i, (sid, v, p) in enumerate(zip(ids, x, props, strict=True))
    ]
    write_store(path, rows, 0, len(rows), StoreHeader("{}", "2026-01-01T00:00:00+00:00", 1, "test"),
                {"fp": FingerprintMeta(spec.energies, {"spec": spec.to_json()})})
    res = cl.classify_store(path, "fp", "property:kind", save=False, config=FAST)
    assert len(res.ids) == 29 and sorted(res.classes) == sorted({str(v) for v in labels[:-1]})
    with pytest.raises(InputError, match="store's structure properties"):
        cl.classify_store(path, "fp", "property:electronic", save=False, config=FAST)
    # a store without the properties datasets (before schema 1.2): the catalogue is the fallback
    with h5py.File(path, "r+") as f:
        del f["structures/properties"], f["structures/properties_offset"]
        f.attrs["schema_version"] = "1.1"  # as written then (a 1.2 store without them is damaged)
    got, source = cl.labels_for_ids(ids[:2], "property:electronic")
    assert got == ["metallic", None] and source == "property:electronic"
    # classify_store then finds exactly one labelled structure (cnt_5_5, from the catalogue)
    with pytest.raises(ParameterError, match=r"at least 2 classes; got \['metallic'\]"):
        cl.classify_store(path, "fp", "property:electronic", save=False, config=FAST)


def test_store_round_trip(tmp_path, rng):
    from sporep_hpc.fingerprints import FingerprintSpec, Window
    from sporep_hpc.store.groups import load_model

    x, labels, _ = _two_class_data(rng, n=40, f=20)
    spec = FingerprintSpec("fp", (Window("zero", 0.0, 10.0, 20, "gaussian", 0.5),))
    ids = [f"s{i}" for i in range(len(x))]
    path = _store(tmp_path / "train.h5", x, spec, ids)
    label_file = tmp_path / "labels.csv"
    lines = [f"{i},{lab}" for i, lab in zip(ids[:-4], labels[:-4], strict=True)]
    label_file.write_text("id,label\n" + "\n".join(lines))
    res = cl.classify_store(path, "fp", label_file, name="m1", config=FAST)
    assert len(res.ids) == 36  # the last 4 are unlabelled
    rec = load_model(path, "m1")
    assert rec.attrs["fingerprint"] == "fp" and rec.attrs["classes"] == list(res.classes)
    # stored with skops (a zip of JSON and arrays), not pickled: its types are the trusted ones
    assert rec.format == "skops" and rec.attrs["skops_version"]
    assert type(rec.estimator) is type(res.estimator.estimator)
    assert rec.attrs["metrics"]["metrics"]["accuracy"]["mean"] == res.metrics["accuracy"]["mean"]
    np.testing.assert_array_equal(rec.energies, spec.energies)
    # predict on another store with the same fingerprint parameters: same answers as the in-memory model
    x2 = rng.normal(size=(5, 20))
    other = _store(tmp_path / "other.h5", x2, spec, [f"t{i}" for i in range(5)])
    pred = cl.predict_store(other, path, model="m1")
    assert pred.ids == [f"t{i}" for i in range(5)]
    assert pred.labels == res.estimator.predict(x2)
    np.testing.assert_allclose(pred.probabilities, res.estimator.predict_proba(x2), rtol=0, atol=0)
    np.testing.assert_allclose(pred.probabilities.sum(axis=1), 1.0, atol=1e-12)
    # another smearing width: refused
    spec_b = FingerprintSpec("fp", (Window("zero", 0.0, 10.0, 20, "gaussian", 0.3),))
    bad = _store(tmp_path / "bad.h5", x2, spec_b, [f"t{i}" for i in range(5)])
    with pytest.raises(ParameterError, match="incompatible: window 0 width"):
        cl.predict_store(bad, path, model="m1")


# ---- a store cannot run code (issue 12.9) --------------------------------------------------------------


class _Touch:
    """Pickles into a call of Path.touch(marker): what unpickling a hostile model would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.marker),))


def _trained(tmp_path, rng):
    """A store with model "m" (classify_store) and another store with 5 structures to predict."""
    from sporep_hpc.fingerprints import FingerprintSpec, Window

    x, labels, _ = _two_class_data(rng, n=30, f=8, informative=3)
    spec = FingerprintSpec("fp", (Window("zero", 0.0, 10.0, 8, "gaussian", 0.5),))
    ids = [f"s{i}" for i in range(len(x))]
    path = _store(tmp_path / "train.h5", x, spec, ids)
    res = cl.classify_store(path, "fp", dict(zip(ids, labels, strict=True)), name="m", config=FAST)
    other = _store(tmp_path / "other.h5", rng.normal(size=(5, 8)), spec, [f"t{i}" for i in range(5)])
    return path, other, res


def _replace_model(path, blob: bytes, format_attr: str | None) -> None:
    """Put `blob` as the model of /models/m, with attribute format (deleted when None: a legacy store)."""
    import h5py

    with h5py.File(path, "r+") as f:
        g = f["models/m"]
        del g["model"]
        g.create_dataset("model", data=np.frombuffer(blob, dtype=np.uint8))
        if format_attr is None:
            del g.attrs["format"]
        else:
            g.attrs["format"] = format_attr


def test_skops_round_trip_gives_identical_predictions(tmp_path, rng):
    import h5py
    import skops.io

    from sporep_hpc.store.groups import TRUSTED_MODEL_TYPES, load_model

    path, other, res = _trained(tmp_path, rng)
    with h5py.File(path, "r") as f:
        blob = f["models/m/model"][()].tobytes()
    assert blob[:2] == b"PK"  # a zip archive (skops), not a pickle stream (b"\x80")
    assert set(skops.io.get_untrusted_types(data=blob)) <= set(TRUSTED_MODEL_TYPES)
    forest = load_model(path, "m").estimator
    x = np.random.default_rng(7).normal(size=(50, 8))
    # reference: the in-memory forest classify fitted; identical bits, not merely close
    np.testing.assert_array_equal(forest.predict_proba(x), res.estimator.estimator.predict_proba(x))
    np.testing.assert_array_equal(forest.predict(x), res.estimator.estimator.predict(x))
    with h5py.File(other, "r") as f:
        x_other = f["fingerprints/fp/values"][()]
    assert cl.predict_store(other, path).labels == res.estimator.predict(x_other)


def test_hostile_pickle_never_runs(tmp_path, rng, capsys):
    import pickle

    from sporep_hpc.cli import main
    from sporep_hpc.errors import StoreError

    path, other, _ = _trained(tmp_path, rng)
    marker = tmp_path / "pwned"
    # a legacy store (no format attribute) whose model would create `marker` when unpickled
    _replace_model(path, pickle.dumps(_Touch(marker)), None)
    assert main(["predict", str(other), "--model", str(path)]) == StoreError.exit_code
    assert "--trust-pickle" in capsys.readouterr().err
    assert not marker.exists()
    # report prints the stored metrics without loading the model, and says why predict refuses it
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "balanced_accuracy_adjusted" in out and "stored as a pickle" in out
    assert not marker.exists()
    _replace_model(path, pickle.dumps(_Touch(marker)), "pickle")
    assert main(["predict", str(other), "--model", str(path)]) == StoreError.exit_code
    assert main(["report", str(path)]) == 0
    assert not marker.exists()
    # the payload is real: --trust-pickle (documented as executing code from the file) runs it; what it
    # returns is not a forest, so predict still ends with exit 3
    assert main(["predict", str(other), "--model", str(path), "--trust-pickle"]) == StoreError.exit_code
    assert marker.exists()


def test_untrusted_skops_types_are_refused(tmp_path, rng, capsys):
    import os

    import skops.io

    from sporep_hpc.cli import main
    from sporep_hpc.errors import StoreError

    path, other, res = _trained(tmp_path, rng)
    forest = res.estimator.estimator
    forest.hook = os.system  # a function in the model: skops would rebuild it on load
    _replace_model(path, skops.io.dumps(forest), "skops")
    assert main(["predict", str(other), "--model", str(path)]) == StoreError.exit_code
    assert f"not trusted: {os.system.__module__}.system" in capsys.readouterr().err
    # only trusted types, but not a forest; a blob that is no skops archive; an unknown format
    for blob, fmt, message in (
        (skops.io.dumps(np.arange(3.0)), "skops", "must be a fitted random forest"),
        (b"not a zip", "skops", "not a readable skops model"),
        (skops.io.dumps(forest), "onnx", "format must be one of 'skops', 'pickle'; got 'onnx'"),
    ):
        _replace_model(path, blob, fmt)
        assert main(["predict", str(other), "--model", str(path)]) == StoreError.exit_code
        assert message in capsys.readouterr().err


def test_trust_pickle_loads_a_legacy_model(tmp_path, rng, capsys):
    import csv
    import pickle

    import h5py

    from sporep_hpc.cli import main
    from sporep_hpc.errors import StoreError

    path, other, res = _trained(tmp_path, rng)
    # what legacy stores held: the pickled _Labelled wrapper, and no format attribute
    _replace_model(path, pickle.dumps(res.estimator, protocol=pickle.HIGHEST_PROTOCOL), None)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(other), "--model", str(path), "-o", str(out)]) == StoreError.exit_code
    assert "is a pickle" in capsys.readouterr().err and not out.exists()
    assert main(["predict", str(other), "--model", str(path), "-o", str(out), "--trust-pickle"]) == 0
    rows = list(csv.reader(out.read_text().splitlines()))
    ref = cl.predict_store(other, path, trust_pickle=True)
    assert [r[1] for r in rows[1:]] == ref.labels
    # reference: the in-memory model classify fitted (predictions of the same forest, identical)
    with h5py.File(other, "r") as f:
        x = f["fingerprints/fp/values"][()]
    assert ref.labels == res.estimator.predict(x)
    np.testing.assert_array_equal(ref.probabilities, res.estimator.predict_proba(x))


def test_predict_help_says_trust_pickle_is_dangerous(capsys):
    from sporep_hpc.cli import main

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--trust-pickle" in text and "DANGEROUS" in text and "executes code from the file" in text


def test_grouped_permutation_importance(rng):
    from sklearn.metrics import balanced_accuracy_score

    class OnFeature1:
        """A fixed rule that looks at feature 1 only."""

        def predict(self, x):
            return (x[:, 1] > 0).astype(int)

    x = rng.normal(size=(30, 4))
    y = (x[:, 1] + 0.3 * rng.normal(size=30) > 0).astype(int)
    groups = [np.array([0, 1]), np.array([2, 3])]
    mean, std = cl.grouped_permutation_importance(OnFeature1(), x, y, groups, 4, np.random.default_rng(5))
    # the block without feature 1 cannot change the answers: exactly zero
    assert mean[2] == mean[3] == 0.0 and std[2] == std[3] == 0.0
    # the block with feature 1: the mean balanced-accuracy drop over the same 4 row permutations
    draws = np.random.default_rng(5)
    base = balanced_accuracy_score(y, OnFeature1().predict(x))
    perms = [draws.permutation(30) for _ in range(4)]
    drops = [base - balanced_accuracy_score(y, (x[p, 1] > 0).astype(int)) for p in perms]
    assert mean[0] == mean[1] == pytest.approx(np.mean(drops), abs=1e-15)
    assert mean[0] > 0.2  # the rule is informative


def test_balanced_random_forest_when_installed(rng):
    pytest.importorskip("imblearn")
    x, labels, e = _two_class_data(rng, n=40)
    cfg = cl.ClassifierConfig(n_estimators=20, cv_folds=3, n_repeats=1, balancing="balanced-rf")
    res = cl.evaluate(x, labels, e, cfg)
    assert res.estimator_name == "BalancedRandomForestClassifier"
    assert res.metrics["balanced_accuracy_adjusted"]["mean"] > 0.5


def test_balanced_rf_needs_imblearn():
    if cl.imblearn_available():
        pytest.skip("imbalanced-learn is installed")
    with pytest.raises(ParameterError, match="imbalanced-learn"):
        cl.make_estimator(cl.ClassifierConfig(n_estimators=5, balancing="balanced-rf"))
    assert type(cl.make_estimator(cl.ClassifierConfig(n_estimators=5))).__name__ == "RandomForestClassifier"


def test_predict_refuses_other_run_parameters(tmp_path, rng):
    from sporep_hpc.fingerprints import FingerprintSpec, Window
    from sporep_hpc.store import FingerprintMeta, StoreHeader, StructureResult, write_store

    spec = FingerprintSpec("fp", (Window("zero", 0.0, 10.0, 20, "gaussian", 0.5),))
    x, labels, _ = _two_class_data(rng, n=24, f=20)

    def store(path, params, rows):
        res = [StructureResult(index=i, id=f"s{i}", status=1, fingerprints={"fp": v})
               for i, v in enumerate(rows)]
        header = StoreHeader(json.dumps(params), "2026-01-01T00:00:00+00:00", 1, "test")
        meta = {"fp": FingerprintMeta(spec.energies, {"spec": spec.to_json()})}
        write_store(path, res, 0, len(res), header, meta)
        return path

    params = {"operator": "kinetic", "basis": "ano-valence", "kdensity": 0.15, "max_atoms": 200}
    train = store(tmp_path / "train.h5", params, x)
    cl.classify_store(train, "fp", {f"s{i}": lab for i, lab in enumerate(labels)}, config=FAST)
    # max_atoms does not change a spectrum: accepted
    same = store(tmp_path / "same.h5", {**params, "max_atoms": 50}, x[:3])
    assert len(cl.predict_store(same, train).ids) == 3
    # another k-point density changes every spectrum: refused, naming the parameter
    other = store(tmp_path / "other.h5", {**params, "kdensity": 0.2}, x[:3])
    with pytest.raises(ParameterError, match=r"other parameters than those of .*: kdensity: 0\.15 -> 0\.2$"):
        cl.predict_store(other, train)


def test_nearest_distances_against_brute_force(rng):
    # reference: numpy cosine distances 1 − a·b/(|a||b|) and a leave-one-out minimum, no scipy
    train, x = rng.random((12, 5)), rng.random((7, 5))

    def cos(a, b):
        return 1 - a @ b.T / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))

    d, thr = cl.nearest_distances(train, x, chunk=3)
    np.testing.assert_allclose(d, cos(x, train).min(axis=1), rtol=0, atol=1e-12)
    loo = cos(train, train) + np.diag(np.full(12, np.inf))
    assert thr == pytest.approx(np.percentile(loo.min(axis=1), 95), abs=1e-12)
    with pytest.raises(ParameterError, match="at least 2 training rows"):
        cl.nearest_distances(train[:1], x)


def test_predict_flags_rows_outside_the_training_domain(tmp_path, rng, capsys, caplog):
    # issue 16.3: a nanotube model applied to BaTiO3. Training rows: one smooth DOS shape (a Gaussian
    # bump at 3 eV, scaled like cells of different size); the "other" store holds one such row (in the
    # domain) and rows with their weight elsewhere (another compound: outside)
    import csv

    from sporep_hpc.cli import main
    from sporep_hpc.fingerprints import FingerprintSpec, Window

    spec = FingerprintSpec("fp", (Window("zero", 0.0, 10.0, 8, "gaussian", 0.5),))
    e = spec.energies
    bump = np.exp(-((e - 3.0) ** 2))
    train = np.array([s * bump + 0.01 * rng.random(8) for s in np.linspace(1, 12, 20)])
    labels = {f"s{i}": "metallic" if i % 2 else "semiconducting" for i in range(20)}
    path = _store(tmp_path / "train.h5", train, spec, list(labels))
    cl.classify_store(path, "fp", labels, name="m", config=FAST)
    far = np.exp(-((e - 8.0) ** 2))
    other = _store(tmp_path / "other.h5", np.array([5 * bump, far, 40 * far]), spec, ["tube", "bto", "bto2"])
    with caplog.at_level("WARNING", logger="sporep_hpc.analysis.classify"):
        res = cl.predict_store(other, path)
    assert res.in_domain.tolist() == [True, False, False]
    assert res.distance[0] < res.domain_threshold < res.distance[1]
    assert any("outside the training domain" in r.getMessage() and "bto, bto2" in r.getMessage()
               for r in caplog.records)
    out = tmp_path / "p.csv"
    assert main(["predict", str(other), "--model", str(path), "-o", str(out)]) == 0
    assert "2 outside the training domain" in capsys.readouterr().out
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["in_domain"] for r in rows] == ["yes", "no", "no"]
    assert float(rows[1]["nearest_training_distance"]) == pytest.approx(res.distance[1], rel=1e-5)


def test_classify_where_filters_on_stored_properties(tmp_path, rng):
    props = [{"diameter": d, "electronic": e} for d, e in zip(
        [3.0, 4.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0], ["metallic", "semiconducting"] * 4, strict=True)]
    assert cl.property_filter("diameter>=6", props) == [False, False] + [True] * 6
    assert cl.property_filter("electronic==metallic", props) == [True, False] * 4
    assert cl.property_filter("diameter < 4", [*props, {}]) == [True] + [False] * 8
    with pytest.raises(ParameterError, match="NAME OP VALUE"):
        cl.property_filter("diameter>=6; import os", props)
    with pytest.raises(ParameterError, match="needs a number"):
        cl.property_filter("electronic>=metallic", props)
    with pytest.raises(InputError, match="no structure satisfies"):
        cl.property_filter("diameter>100", props)
