"""Data preparation for the nanogpt template.

Builds data/<dataset>/{train.bin,val.bin,meta.json} (uint16 token ids, char-level):
- shakespeare_char from the bundled data/shakespeare.txt.xz (works offline; 90/10 split);
- enwik8 and text8, downloaded from mattmahoney.net when the network allows
  (90M/5M/5M characters for train/val/test, as in the usual benchmarks).

Usage: python prepare.py [shakespeare_char] [enwik8] [text8]   (default: all three;
only shakespeare_char when AISCI_SMOKE=1 or AISCI_OFFLINE=1)
A download that is not possible prints one line saying so and is skipped.
"""

import io
import json
import lzma
import os
import sys
import urllib.request
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(HERE, "data")
DOWNLOADS = {
    "enwik8": "http://mattmahoney.net/dc/enwik8.zip",
    "text8": "http://mattmahoney.net/dc/text8.zip",
}
DOWNLOAD_TIMEOUT_S = 30


def is_prepared(name, data_dir=DATA_DIR):
    d = os.path.join(data_dir, name)
    return all(os.path.isfile(os.path.join(d, f)) for f in ("train.bin", "val.bin", "meta.json"))


def write_splits(name, text, splits, data_dir=DATA_DIR):
    """Encode text char by char and write the splits; splits = [(name, start, end)]."""
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    out = os.path.join(data_dir, name)
    os.makedirs(out, exist_ok=True)
    for split, start, end in splits:
        ids[start:end].tofile(os.path.join(out, f"{split}.bin"))
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({"vocab_size": len(chars), "itos": chars}, f)
    return len(chars)


def prepare_shakespeare(data_dir=DATA_DIR):
    with lzma.open(os.path.join(HERE, "data", "shakespeare.txt.xz"), "rt", encoding="utf-8") as f:
        text = f.read()
    n = len(text)
    vocab = write_splits("shakespeare_char", text,
                         [("train", 0, int(n * 0.9)), ("val", int(n * 0.9), n)], data_dir)
    print(f"prepare: shakespeare_char: {n:,} characters, vocab {vocab}")


def prepare_download(name, data_dir=DATA_DIR):
    url = DOWNLOADS[name]
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
            payload = resp.read()
    except OSError as exc:
        print(f"prepare: {name}: cannot download {url} ({exc.__class__.__name__}: {exc}); "
              f"skipped - run `python prepare.py {name}` on a machine with network access")
        return False
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        raw = zf.read(zf.namelist()[0])
    # enwik8 is raw bytes of XML; decode byte-per-char so every byte is one token.
    text = raw.decode("latin-1")
    if name == "enwik8":
        splits = [("train", 0, 90_000_000), ("val", 90_000_000, 95_000_000),
                  ("test", 95_000_000, 100_000_000)]
    else:
        splits = [("train", 0, 90_000_000), ("val", 90_000_000, 95_000_000),
                  ("test", 95_000_000, len(text))]
    vocab = write_splits(name, text, splits, data_dir)
    print(f"prepare: {name}: {len(text):,} characters, vocab {vocab}")
    return True


def main(argv):
    # With no arguments the larger datasets are optional: a failed download is reported
    # but is not an error. Naming a dataset explicitly makes its failure the exit code.
    names = argv or ["shakespeare_char", "enwik8", "text8"]
    offline = any(os.environ.get(v, "") not in ("", "0") for v in ("AISCI_SMOKE", "AISCI_OFFLINE"))
    if offline and not argv:
        # Smoke runs and offline labs only use the bundled corpus: no download attempt.
        print("prepare: AISCI_SMOKE/AISCI_OFFLINE set: enwik8 and text8 not downloaded")
        names = ["shakespeare_char"]
    ok = True
    for name in names:
        if name == "shakespeare_char":
            prepare_shakespeare()
        elif name in DOWNLOADS:
            if is_prepared(name):
                print(f"prepare: {name}: already prepared")
            else:
                ok = prepare_download(name) and ok
        else:
            print(f"prepare: unknown dataset {name!r}; expected shakespeare_char, enwik8 or text8")
            return 2
    return 0 if ok or not argv else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
