#!/usr/bin/env python3
"""Extract the BIP32 (vectors 1-5) and BIP86 test vectors from the BIP texts
into JSON data files under wallet/testdata/. Run once; the outputs are committed.

usage: scripts/extract-vectors.py DIR_WITH_BIP_MEDIAWIKI
"""
import json
import re
import sys
from pathlib import Path

src = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/vectors")
out = Path(__file__).resolve().parent.parent / "wallet" / "testdata"

# BIP32
text = (src / "bip-0032.mediawiki").read_text()
vectors = []
parts = re.split(r"===Test vector (\d)===", text)
for num, body in zip(parts[1::2], parts[2::2]):
    body = body.split("==Acknowledgements==")[0]
    if num == "5":
        invalid = re.findall(r"^\* ((?:xpub|xprv|tpub|tprv|DMwo)\w+) \((.*)\)", body, re.M)
        vectors.append({"vector": 5, "invalid": [{"key": k, "reason": r} for k, r in invalid]})
        continue
    seed = re.search(r"Seed \(hex\): ([0-9a-f]+)", body).group(1)
    chains = []
    for path, xpub, xprv in re.findall(
        r"\* Chain ([^\n]+)\n\*\* ext pub: (\w+)\n\*\* ext prv: (\w+)", body
    ):
        path = path.replace("<sub>H</sub>", "'")
        chains.append({"path": path, "xpub": xpub, "xprv": xprv})
    vectors.append({"vector": int(num), "seed": seed, "chains": chains})
(out / "bip32-vectors.json").write_text(json.dumps(vectors, indent=1) + "\n")

# BIP86
text = (src / "bip-0086.mediawiki").read_text()
mnemonic = re.search(r"mnemonic = (.+)", text).group(1).strip()
root = re.search(r"rootpriv = (\w+)", text).group(1)
accounts = []
for path, body in re.findall(r"// [^\n]*= (m/86'/\d'/\d'(?:/\d/\d)?)\n(.*?)(?=\n//|\n</pre>)", text, re.S):
    fields = dict(re.findall(r"(\w+)\s*=\s*(\w+)", body))
    accounts.append({"path": path, **fields})
(out / "bip86-vectors.json").write_text(
    json.dumps({"mnemonic": mnemonic, "rootpriv": root, "derivations": accounts}, indent=1) + "\n"
)
print("wrote", out / "bip32-vectors.json", out / "bip86-vectors.json")
