"""Checks a run's TensorBoard folder (`lmmr1 train --use_tensorboard DIR`) with TensorBoard's own reader.
Loads it with tensorboard's EventAccumulator (which checks every record's masked CRC32C and applies the START purge
of resumed runs), prints one JSON line (scalar tags with point counts and last steps, text tags) and exits 1 when a
required tag is missing. Independently of tensorboard, every event file is also re-read here with a pure-Python
TFRecord reader (length and payload masked CRC32C); when tensorboard is not importable, that reader alone decides
(scalars only, no START purge) and the output says so.
usage: python3 tensorboard_check.py RUN_TB_DIR [--require TAG ...]
"""
import argparse, glob, json, os, struct, sys

REQUIRED = ["train/reward", "train/policy_loss", "train/kl", "train/response_length", "train/entropy",
            "train/clip_frac", "train/grad_norm", "train/actor_lr", "time/step"]

# ---- CRC32C (Castagnoli, reflected 0x82F63B78), table-driven; TFRecord masks it as TensorFlow's crc32c::Mask.
_T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _T.append(c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def fields(buf):
    """Protobuf fields of buf: (number, wire type, int value or bytes)."""
    pos, out = 0, []
    def varint():
        nonlocal pos
        v = shift = 0
        while True:
            b = buf[pos]; pos += 1
            v |= (b & 0x7F) << shift
            if b < 0x80:
                return v
            shift += 7
    while pos < len(buf):
        key = varint()
        num, wire = key >> 3, key & 7
        if wire == 0:
            out.append((num, wire, varint()))
        elif wire == 1:
            out.append((num, wire, buf[pos:pos + 8])); pos += 8
        elif wire == 5:
            out.append((num, wire, buf[pos:pos + 4])); pos += 4
        elif wire == 2:
            n = varint(); out.append((num, wire, buf[pos:pos + n])); pos += n
        else:
            raise ValueError(f"wire type {wire}")
    return out


def read_raw(path):
    """Records of one event file, checking the framing; returns [(step, {tag: value})] of scalar events."""
    data, pos, events = open(path, "rb").read(), 0, []
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError(f"{path}: truncated header at byte {pos}")
        (n,), (hc,) = struct.unpack_from("<Q", data, pos), struct.unpack_from("<I", data, pos + 8)
        if masked(data[pos:pos + 8]) != hc:
            raise ValueError(f"{path}: length CRC mismatch at byte {pos}")
        payload = data[pos + 12:pos + 12 + n]
        if len(payload) != n or pos + 16 + n > len(data):
            raise ValueError(f"{path}: truncated record at byte {pos}")
        (pc,) = struct.unpack_from("<I", data, pos + 12 + n)
        if masked(payload) != pc:
            raise ValueError(f"{path}: payload CRC mismatch at byte {pos}")
        step, scalars = 0, {}
        for num, _, v in fields(payload):
            if num == 2:
                step = v
            elif num == 5:                                   # Summary
                for vn, _, val in fields(v):
                    if vn != 1:
                        continue
                    f = {k: x for k, _, x in fields(val)}
                    if 2 in f:                               # simple_value (float, fixed32)
                        scalars[f[1].decode()] = struct.unpack("<f", f[2])[0]
        events.append((step, scalars))
        pos += 16 + n
    return events


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("logdir")
    ap.add_argument("--require", nargs="*", default=REQUIRED)
    a = ap.parse_args()
    files = sorted(glob.glob(os.path.join(a.logdir, "*tfevents*")))
    if not files:
        print(json.dumps({"what": "tensorboard", "error": f"no event files in {a.logdir}"})); sys.exit(1)
    raw = {}
    for f in files:                                          # raises on any framing / CRC error
        for step, sc in read_raw(f):
            for tag, v in sc.items():
                raw.setdefault(tag, {})[step] = v
    res = {"what": "tensorboard", "files": [os.path.basename(f) for f in files], "records_crc_ok": True}
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as e:
        res["reader"] = f"pure-python CRC32C reader only (tensorboard not importable: {e})"
        scalars = {t: {"count": len(s), "last_step": max(s)} for t, s in sorted(raw.items())}
        texts = []
    else:
        ea = EventAccumulator(a.logdir, size_guidance={"scalars": 0, "tensors": 0})
        ea.Reload()
        tags = ea.Tags()
        res["reader"] = "tensorboard EventAccumulator " + __import__("tensorboard").__version__
        scalars = {}
        for t in sorted(tags["scalars"]):
            ev = ea.Scalars(t)
            scalars[t] = {"count": len(ev), "last_step": ev[-1].step}
        texts = sorted(tags.get("tensors", []))
    res["scalars"] = scalars
    res["text_tags"] = texts
    res["missing"] = [t for t in a.require if t not in scalars]
    print(json.dumps(res), flush=True)
    sys.exit(1 if res["missing"] else 0)


if __name__ == "__main__":
    main()
