"""`sporep-hpc predict other.h5 --model store.h5`: apply a stored classifier to another store."""

from __future__ import annotations

import argparse
import csv
import sys

DESCRIPTION = """\
Apply the model /models/<name> of a store to the fingerprints of another store. Fingerprints made with
other parameters (windows, smearing, energy grid) are refused. Models are stored with skops and loaded
only when they hold the trusted types of a random forest; models of older stores are pickles and are
refused (exit 3) unless --trust-pickle: retrain them with `sporep-hpc classify` instead.

Each row also gets the cosine distance of its fingerprint to the nearest training row
(nearest_training_distance) and in_domain: "no" when that distance exceeds the 95th
percentile of the training rows' own nearest-neighbour distances (the prediction is then an
extrapolation, e.g. BaTiO3 given to a nanotube model); a warning names those rows.

  sporep-hpc predict new.h5 --model trained.h5 [--name kinetic] [-o predictions.csv]
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="apply a stored classifier to a store",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", help="store with the structures to classify")
    p.add_argument("--model", required=True, help="store holding the model (/models/<name>)")
    p.add_argument("--name", default=None, help="model name (default: the only model)")
    p.add_argument("--fingerprint", default=None, help="fingerprint of STORE (default: the model's)")
    p.add_argument("-o", "--output", default=None, help="write id,label,p(class)... as CSV here")
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        dest="trust_pickle",
        help="DANGEROUS: load a model stored as a pickle by an older sporep-hpc; unpickling executes code "
        "from the file. Only for stores you made yourself",
    )
    p.set_defaults(run=predict_command)


def predict_command(args) -> int:
    from ..analysis.classify import predict_store

    res = predict_store(
        args.store, args.model, model=args.name, fingerprint=args.fingerprint, trust_pickle=args.trust_pickle
    )
    header = ["id", "label", *(f"p({c})" for c in res.classes), "nearest_training_distance", "in_domain"]
    rows = [
        [sid, lab, *(f"{p:.4f}" for p in prob), f"{d:.6g}", "yes" if ok else "no"]
        for sid, lab, prob, d, ok in zip(
            res.ids, res.labels, res.probabilities, res.distance, res.in_domain, strict=True
        )
    ]
    if args.output:
        with open(args.output, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
        outside = int(len(rows) - res.in_domain.sum())
        print(
            f"{len(rows)} predictions of model {res.model} written to {args.output}; {outside} outside the "
            f"training domain (nearest training row farther than {res.domain_threshold:.4g})"
        )
    else:
        w = csv.writer(sys.stdout)
        w.writerow(header)
        w.writerows(rows)
    return 0
