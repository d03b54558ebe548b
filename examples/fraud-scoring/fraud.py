"""Fraud scoring example: synthetic labelled card transactions, the features the
`onnx` agent computes, and a logistic-regression model exported to ONNX.

    python fraud.py train    --out model.onnx [--seed 7] [--n 60000]
    python fraud.py generate --out test.jsonl [--seed 11] [--n 20000]
    python fraud.py evaluate --data test.jsonl --model model.onnx [--threshold 0.5]
    python fraud.py score    --data test.jsonl --model model.onnx

Everything is reproducible from the seed (numpy's PCG64). The model is built with the
`onnx` helper API as MatMul + Add + Sigmoid over 20 features: 16 fields of the
transaction and 4 sliding-window features per card (count and sum of amounts in the
last minute and hour, the current transaction included), which the agent keeps in its
keyed state exactly as `window_features` computes them here.

`train` also takes `--input-name`, `--features` and `--double-output` (tests use them
to make models whose inputs or output do not fit an agent), and `--bias-shift` (a
different but valid version, for hot-swap tests).
"""

import argparse
import json
import math
import sys

import numpy as np

CATEGORIES = ["grocery", "fuel", "restaurant", "electronics", "travel", "jewelry"]
FIELDS = [
    "amount",
    "hour",
    "online",
    "foreign",
    "card_present",
    "pin_used",
    "new_merchant",
    "distance_km",
    "merchant_risk",
    "account_age_days",
] + [f"category.{c}" for c in CATEGORIES]
SPANS_S = [60, 3600]
WINDOW_FEATURES = [f"window.{kind}_{s}s" for s in SPANS_S for kind in ("count", "sum")]
FEATURES = FIELDS + WINDOW_FEATURES  # 20, in the agent's input order
MAX_EVENTS = 1000


def generate(seed, n, cards=1500, fraud_rate=0.02):
    """Transactions in time order over about a day; fraud comes in bursts on
    compromised cards (several quick online/foreign purchases)."""
    rng = np.random.default_rng(seed)
    start = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    day_ms = 24 * 3600 * 1000
    out = []
    i = 0
    t = start
    step = day_ms / n
    while len(out) < n:
        t += int(rng.exponential(step))
        card = f"c{rng.integers(cards):05d}"
        if rng.random() < fraud_rate / 3:
            # A burst of 2..6 fraudulent transactions on this card within minutes.
            burst = int(rng.integers(2, 7))
            bt = t
            for _ in range(burst):
                bt += int(rng.exponential(20_000))
                out.append(transaction(rng, i, card, bt, fraud=True))
                i += 1
        else:
            out.append(transaction(rng, i, card, t, fraud=False))
            i += 1
    out.sort(key=lambda r: r["ts"])
    return out[:n]


def transaction(rng, i, card, ts, fraud):
    hour = (ts // 3_600_000) % 24
    if fraud:
        # Some fraud looks ordinary: the model must not be perfect.
        subtle = rng.random() < 0.25
        category = rng.choice(CATEGORIES, p=[0.1, 0.05, 0.05, 0.4, 0.15, 0.25])
        amount = float(np.round(rng.lognormal(4.2 if subtle else 5.5, 0.8), 2))
        online = bool(rng.random() < (0.5 if subtle else 0.85))
        foreign = bool(rng.random() < (0.2 if subtle else 0.6))
        card_present = not online and bool(rng.random() < 0.5)
        pin_used = card_present and bool(rng.random() < 0.3)
        new_merchant = bool(rng.random() < (0.5 if subtle else 0.9))
        distance = float(np.round(rng.exponential(40 if subtle else 600), 1))
        risk = float(np.round(rng.beta(2, 5 if subtle else 2), 3))
        age = int(rng.integers(10, 3000))
    else:
        category = rng.choice(CATEGORIES, p=[0.35, 0.2, 0.25, 0.08, 0.07, 0.05])
        amount = float(np.round(rng.lognormal(3.6, 0.9), 2))
        online = bool(rng.random() < 0.25)
        foreign = bool(rng.random() < 0.04)
        card_present = not online
        pin_used = card_present and bool(rng.random() < 0.8)
        new_merchant = bool(rng.random() < 0.15)
        distance = float(np.round(rng.exponential(15), 1))
        risk = float(np.round(rng.beta(2, 8), 3))
        age = int(rng.integers(30, 4000))
    return {
        "id": i,
        "card": card,
        "ts": int(ts),
        "amount": amount,
        "hour": int(hour),
        "online": online,
        "foreign": foreign,
        "card_present": bool(card_present),
        "pin_used": bool(pin_used),
        "new_merchant": new_merchant,
        "distance_km": distance,
        "merchant_risk": risk,
        "account_age_days": age,
        "category": {c: int(c == category) for c in CATEGORIES},
        "label": int(fraud),
    }


def lookup(record, path):
    node = record
    for part in path.split("."):
        node = node[part]
    return float(node)


def window_features(records):
    """Per card, in time order: count and sum of amounts with ts in (now - span, now],
    the current transaction included, keeping at most MAX_EVENTS per card (the agent's
    `windows` stage does exactly this)."""
    state = {}
    rows = []
    longest = max(SPANS_S) * 1000
    for r in records:
        now = r["ts"]
        entries = [e for e in state.get(r["card"], []) if now - e[0] < longest]
        entries.append((now, r["amount"]))
        entries = entries[-MAX_EVENTS:]
        state[r["card"]] = entries
        feats = []
        for s in SPANS_S:
            since = now - s * 1000
            kept = [a for (t, a) in entries if since < t <= now]
            feats += [float(len(kept)), float(sum(kept))]
        rows.append(feats)
    return rows


def matrix(records):
    windows = window_features(records)
    x = [[lookup(r, f) for f in FIELDS] + w for r, w in zip(records, windows)]
    return np.array(x, dtype=np.float64), np.array([r["label"] for r in records])


def export(weights, bias, path, input_name="features", features=len(FEATURES), double_output=False):
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("MatMul", [input_name, "W"], ["logit0"]),
        helper.make_node("Add", ["logit0", "B"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["p32" if double_output else "probability"]),
    ]
    if double_output:  # a model of the wrong output type, for load-time checks
        nodes.append(helper.make_node("Cast", ["p32"], ["probability"], to=TensorProto.DOUBLE))
    out_type = TensorProto.DOUBLE if double_output else TensorProto.FLOAT

    w = helper.make_tensor("W", TensorProto.FLOAT, [features, 1], weights.astype(np.float32).ravel().tolist())
    b = helper.make_tensor("B", TensorProto.FLOAT, [1], [float(bias)])
    graph = helper.make_graph(
        nodes,
        "fraud",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("probability", out_type, ["batch", 1])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="agentlog-fraud-example")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def train(args):
    from sklearn.linear_model import LogisticRegression

    records = generate(args.seed, args.n)
    x, y = matrix(records)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    clf = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced", random_state=args.seed)
    clf.fit((x - mean) / std, y)
    # Fold the standardisation into the weights: the model takes raw features.
    w = clf.coef_[0] / std
    b = clf.intercept_[0] - float(np.sum(clf.coef_[0] * mean / std)) + args.bias_shift
    if args.features != len(FEATURES):
        w = np.resize(w, args.features)
    export(w, b, args.out, args.input_name, args.features, args.double_output)
    print(json.dumps({"out": args.out, "train_rows": len(records), "fraud": int(y.sum())}))


def evaluate(args):
    import onnxruntime as ort

    records = [json.loads(line) for line in open(args.data)]
    x, y = matrix(records)
    session = ort.InferenceSession(args.model)
    p = session.run(None, {"features": x.astype(np.float32)})[0][:, 0]
    flagged = p >= args.threshold
    tp = int(np.sum(flagged & (y == 1)))
    fp = int(np.sum(flagged & (y == 0)))
    fn = int(np.sum(~flagged & (y == 1)))
    print(json.dumps({
        "rows": len(records),
        "fraud": int(y.sum()),
        "alerts": int(flagged.sum()),
        "precision": round(tp / max(tp + fp, 1), 4),
        "recall": round(tp / max(tp + fn, 1), 4),
    }))


def score(args):
    """Probabilities by transaction id, as JSON (tests compare the agent's scores)."""
    import onnxruntime as ort

    records = [json.loads(line) for line in open(args.data)]
    x, _ = matrix(records)
    session = ort.InferenceSession(args.model)
    p = session.run(None, {"features": x.astype(np.float32)})[0][:, 0]
    print(json.dumps({str(r["id"]): float(v) for r, v in zip(records, p)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--seed", type=int, default=7)
    t.add_argument("--n", type=int, default=60000)
    t.add_argument("--input-name", default="features")
    t.add_argument("--features", type=int, default=len(FEATURES))
    t.add_argument("--bias-shift", type=float, default=0.0)
    t.add_argument("--double-output", action="store_true")
    g = sub.add_parser("generate")
    g.add_argument("--out", required=True)
    g.add_argument("--seed", type=int, default=11)
    g.add_argument("--n", type=int, default=20000)
    e = sub.add_parser("evaluate")
    e.add_argument("--data", required=True)
    e.add_argument("--model", required=True)
    e.add_argument("--threshold", type=float, default=0.5)
    s = sub.add_parser("score")
    s.add_argument("--data", required=True)
    s.add_argument("--model", required=True)
    args = parser.parse_args()
    if args.command == "train":
        train(args)
    elif args.command == "generate":
        records = generate(args.seed, args.n)
        with (sys.stdout if args.out == "-" else open(args.out, "w")) as f:
            for r in records:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
    elif args.command == "score":
        score(args)
    else:
        evaluate(args)


if __name__ == "__main__":
    main()
