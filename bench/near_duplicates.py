"""Near-duplicate detection: pair recall and precision over thresholds, and how many pairs of
*different* real photos each rule wrongly joins.

    .venv/bin/python bench/near_duplicates.py            # synthetic photos (tests/synthetic_photos.py)
    .venv/bin/python bench/near_duplicates.py --real 2000 # first 2000 clothing photos + edited copies
    .venv/bin/python bench/near_duplicates.py --imagehash  # pHash from the imagehash package instead

Every other photo gets one edited copy (re-encoded, resized, cropped 2-6% per side, colour-shifted,
or all four); a found pair is right when both photos come from the same original.
"""

import sys
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synthetic_photos import EDITS, edited_copy, varied_photo  # noqa: E402

from wardrobe.data.hashing import close_pairs, groups_from_pairs, perceptual_hashes, thumb_similarity  # noqa: E402
from wardrobe.data.images import load_image  # noqa: E402

real = "--real" in sys.argv
if "--imagehash" in sys.argv:
    import imagehash

    def perceptual_hashes(img, _own=perceptual_hashes):  # noqa: F811 - imagehash's pHash, the rest unchanged
        _, dhash, thumb = _own(img)
        return int(str(imagehash.phash(img)), 16), dhash, thumb
args = [a for a in sys.argv[1:] if not a.startswith("--")]
n = int(args[0]) if args else 400
if real:
    from wardrobe.data.presets import dataset_root

    files = sorted((dataset_root() / "images").glob("*.jpg"))[:n]
    originals = (load_image(f) for f in files)
else:
    originals = (varied_photo(s) for s in range(n))
fps, source, kinds = [], [], []
for s, img in enumerate(originals):
    fps.append(perceptual_hashes(img))
    source.append(s)
    kinds.append("original")
    if s % 2 == 0:
        kind = EDITS[(s // 2) % len(EDITS)]
        fps.append(perceptual_hashes(edited_copy(img, kind, seed=s)))
        source.append(s)
        kinds.append(kind)
ph = [f[0] for f in fps]
thumbs = np.stack([f[2] for f in fps])
m = len(fps)
truth = {(i, j) for i, j in combinations(range(m), 2) if source[i] == source[j]}
print(f"{'real' if real else 'synthetic'}: {m} photos, {len(truth)} true pairs")
for p in (4, 6, 8, 10, 12, 14, 16):
    cand = close_pairs(ph, p)
    sims = thumb_similarity(thumbs[[i for i, _ in cand]], thumbs[[j for _, j in cand]]) if cand else np.zeros(0)
    for c in ((None,) if real else (None, 0.85)) + (0.90, 0.93, 0.95, 0.97):
        pairs = [pq for pq, s in zip(cand, sims) if c is None or s >= c]
        found = set()
        for g in groups_from_pairs(m, pairs):
            found.update(combinations(g, 2))
        tp = len(found & truth)
        per_kind = {k: sum(1 for i, j in truth if kinds[j] == k and (i, j) in found) /
                    max(1, sum(1 for i, j in truth if kinds[j] == k)) for k in EDITS}
        print(f"pHash<={p:2d} thumb>={c or '-':4} recall {tp / len(truth):.3f} precision {tp / max(len(found), 1):.3f} "
              f"wrong pairs {len(found) - tp:5d}  " + " ".join(f"{k} {v:.2f}" for k, v in per_kind.items()))
