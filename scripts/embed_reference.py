"""Reference sentence embeddings for tests/inference.rs: the same model.onnx and
tokenizer.json the Rust Embedder loads, run by Python onnxruntime + tokenizers, mean
pooled over the attention mask and L2-normalised (sentence-transformers' recipe).

    python scripts/embed_reference.py MODEL TOKENIZER < sentences.json > vectors.json
"""

import json
import sys

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def main():
    model, tokenizer_path = sys.argv[1], sys.argv[2]
    sentences = json.load(sys.stdin)
    tokenizer = Tokenizer.from_file(tokenizer_path)
    tokenizer.enable_padding()  # to the longest sentence (mean pooling ignores pads)
    encodings = tokenizer.encode_batch(sentences)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    types = np.array([e.type_ids for e in encodings], dtype=np.int64)
    session = ort.InferenceSession(model)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    feeds = {i.name: feeds[i.name] for i in session.get_inputs()}
    hidden = session.run(None, feeds)[0]
    m = mask[:, :, None].astype(np.float32)
    pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    json.dump(pooled.tolist(), sys.stdout)


if __name__ == "__main__":
    main()
