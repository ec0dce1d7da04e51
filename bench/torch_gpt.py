"""PyTorch reference for `npm run bench`: the same GPT as lib/backbone/gpt.ts
(class-token prefix, target-position embedding, RMSNorm, SwiGLU, causal
attention, 2D rotary by cell on pairs, separate q/k/v projections, untied
head), with the same parameter names, shapes and init, timed on this CPU.
Every mode prints one JSON object on stdout (its last line), including
`vmHwmMB` (peak RSS from /proc/self/status) and `cpuSeconds`.

Usage:
  python3 bench/torch_gpt.py train  '{"cfg": {...GPTConfig}, "batch": 64, "steps": 3}'
  python3 bench/torch_gpt.py sample '{"cfg": {...}, "batch": 64, "cached": true, "repeats": 2,
                                      "weights": "model.safetensors", "check": "check.json"}'
  python3 bench/torch_gpt.py '{...GPTConfig}' BATCH STEPS          (old form: train)

`sample` decodes `batch` images of gridH*gridW tokens in raster order at
temperature 1 (softmax + multinomial), with a preallocated KV cache
(`cached`: true) or recomputing the whole prefix for every token (false).
With `weights` (a safetensors file of our parameters, as our checkpoints
store them) it loads our model; with `check` (teacher-forced tokens, classes
and our logits) it first runs the KV-cache path teacher-forced and reports
the largest |torch - ours| logit difference: the two models are the same.
"""
import json, math, os, resource, struct, sys, time

import torch
import torch.nn.functional as F

threads = int(os.environ.get("ORDERHEAD_TORCH_THREADS", os.cpu_count() or 1))
torch.set_num_threads(threads)
# Debian's torch calls whatever libblas.so.3 points to: OpenBLAS (fast) or the reference BLAS (~20x slower).
_alt = "/etc/alternatives/libblas.so.3-x86_64-linux-gnu"
BLAS = os.path.realpath(_alt) if os.path.exists(_alt) else "unknown"


def vm_hwm_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        assert spec["dtype"] == "F32", f"{name}: {spec['dtype']}"
        b, e = spec["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[b:e]), dtype=torch.float32).view(spec["shape"])
    return out


class GPT(torch.nn.Module):
    """lib/backbone/gpt.ts in PyTorch: parameter `h0.wq` [d, d] is applied as x @ W, as there."""

    def __init__(self, cfg, weights=None):
        super().__init__()
        self.cfg = cfg
        V, C, d, f, L, H = cfg["vocabSize"], cfg["numClasses"], cfg["dModel"], cfg["dFF"], cfg["nLayer"], cfg["nHead"]
        self.T, self.d, self.H, self.hd, self.L, self.V = cfg["gridH"] * cfg["gridW"], d, H, d // H, L, V
        shapes = [("tok_emb", (V, d)), ("cls_emb", (C + 1, d)), ("tgt_pos", (self.T, d))]
        for l in range(L):
            p = f"h{l}."
            shapes += [(p + "attn_norm", (d,)), (p + "wq", (d, d)), (p + "wk", (d, d)), (p + "wv", (d, d)), (p + "wo", (d, d)),
                       (p + "mlp_norm", (d,)), (p + "w1", (d, f)), (p + "w3", (d, f)), (p + "w2", (f, d))]
        shapes += [("norm_f", (d,)), ("head", (d, V))]
        g = torch.Generator().manual_seed(0)
        self.p = torch.nn.ParameterDict()
        for name, shape in shapes:
            if weights is not None:
                t = weights[name].clone()
            elif len(shape) == 1:
                t = torch.ones(shape)
            else:
                std = cfg["initStd"] * (1 / math.sqrt(2 * L) if name.endswith((".wo", ".w2")) else 1)
                t = torch.randn(shape, generator=g) * std
            self.p[name.replace(".", "_")] = torch.nn.Parameter(t)
        self.cos, self.sin = self.rotary()

    def w(self, name):
        return self.p[name.replace(".", "_")]

    def rotary(self):
        """[T+1, hd]: row 0 = no rotation (class slot), row c+1 = cell c; first half of the pairs by row, second by column."""
        cfg, hd = self.cfg, self.hd
        pairs, half = hd // 2, hd // 4
        cos, sin = torch.ones(self.T + 1, hd), torch.zeros(self.T + 1, hd)
        for cell in range(self.T):
            row, col = divmod(cell, cfg["gridW"])
            for p in range(pairs):
                ang = (row if p < half else col) * cfg["ropeBase"] ** (-(p % half) / half)
                cos[cell + 1, 2 * p: 2 * p + 2] = math.cos(ang)
                sin[cell + 1, 2 * p: 2 * p + 2] = math.sin(ang)
        return cos, sin

    def rms(self, x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg["normEps"]) * g

    def rope(self, x, cos, sin):  # x [B, S, H, hd], cos/sin [S, 1, hd]; pairs (2i, 2i+1) -> (-x[2i+1], x[2i])
        x2 = x.view(*x.shape[:-1], self.hd // 2, 2)
        rot = torch.stack((-x2[..., 1], x2[..., 0]), -1).view_as(x)
        return x * cos + rot * sin

    def embed(self, classes, tokens, slots):
        """Raster order. Slot s: input = class (s = 0) or the token of cell s-1; rotary by that cell; + tgt_pos[s]."""
        parts = []
        if slots[0] == 0:
            parts.append(self.w("cls_emb")[classes][:, None])
        first_tok = max(slots[0], 1)
        if slots[-1] >= first_tok:
            parts.append(self.w("tok_emb")[tokens[:, first_tok - 1: slots[-1]]])
        x = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
        idx = torch.arange(slots[0], slots[-1] + 1)
        return x + self.w("tgt_pos")[idx][None], self.cos[idx][:, None], self.sin[idx][:, None]

    def block(self, l, x, cos, sin, cache=None, start=0):
        """x [B, S, d] at slots start..start+S-1; cache: (K, V) [B, H, T, hd] preallocated, filled in place."""
        B, S, _ = x.shape
        p = f"h{l}."
        h = self.rms(x, self.w(p + "attn_norm"))
        q = self.rope((h @ self.w(p + "wq")).view(B, S, self.H, self.hd), cos, sin).transpose(1, 2)
        k = self.rope((h @ self.w(p + "wk")).view(B, S, self.H, self.hd), cos, sin).transpose(1, 2)
        v = (h @ self.w(p + "wv")).view(B, S, self.H, self.hd).transpose(1, 2)
        if cache is not None:
            K, Vc = cache
            K[:, :, start: start + S] = k
            Vc[:, :, start: start + S] = v
            k, v = K[:, :, : start + S], Vc[:, :, : start + S]
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        if S > 1:
            att = att.masked_fill(torch.triu(torch.ones(S, start + S, dtype=torch.bool), start + 1), float("-inf"))
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, S, self.d)
        x = x + y @ self.w(p + "wo")
        m = self.rms(x, self.w(p + "mlp_norm"))
        return x + (F.silu(m @ self.w(p + "w1")) * (m @ self.w(p + "w3"))) @ self.w(p + "w2")

    def logits(self, classes, tokens, slots, caches=None):
        x, cos, sin = self.embed(classes, tokens, slots)
        for l in range(self.L):
            x = self.block(l, x, cos, sin, caches[l] if caches else None, slots[0])
        return self.rms(x, self.w("norm_f")) @ self.w("head")

    def loss(self, tokens, classes):  # training: teacher-forced, all T slots
        return F.cross_entropy(self.logits(classes, tokens, range(self.T)).view(-1, self.V), tokens.reshape(-1))

    def new_cache(self, B):
        return [(torch.empty(B, self.H, self.T, self.hd), torch.empty(B, self.H, self.T, self.hd)) for _ in range(self.L)]

    @torch.inference_mode()
    def sample(self, classes, cached=True, gen=None):
        B = classes.shape[0]
        tokens = torch.zeros(B, self.T, dtype=torch.long)
        caches = self.new_cache(B) if cached else None
        for s in range(self.T):
            lg = self.logits(classes, tokens, range(s, s + 1), caches) if cached else self.logits(classes, tokens, range(0, s + 1))
            probs = torch.softmax(lg[:, -1], -1)
            tokens[:, s] = torch.multinomial(probs, 1, generator=gen)[:, 0]
        return tokens

    @torch.inference_mode()
    def teacher_forced_cached(self, classes, tokens):
        caches = self.new_cache(classes.shape[0])
        return torch.cat([self.logits(classes, tokens, range(s, s + 1), caches) for s in range(self.T)], 1)


def train(opts):
    cfg, batch, steps = opts["cfg"], int(opts["batch"]), int(opts["steps"])
    torch.manual_seed(0)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.05)
    tokens = torch.randint(0, cfg["vocabSize"], (batch, model.T))
    classes = torch.randint(0, cfg["numClasses"], (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model.loss(tokens, classes)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    step()  # warm-up
    times = []
    c0 = cpu_seconds()
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"params": sum(p.numel() for p in model.parameters()), "stepMs": [t * 1000 for t in times],
            "medianMs": sorted(times)[len(times) // 2] * 1000, "bestMs": min(times) * 1000, "cpuSecondsTimed": cpu_seconds() - c0}


def sample(opts):
    cfg, B, cached, repeats = opts["cfg"], int(opts["batch"]), bool(opts.get("cached", True)), int(opts.get("repeats", 1))
    weights = read_safetensors(opts["weights"]) if opts.get("weights") else None
    model = GPT(cfg, weights)
    out = {}
    if opts.get("check"):
        with open(opts["check"]) as f:
            chk = json.load(f)
        n = len(chk["classes"])
        ours = torch.tensor(chk["logits"], dtype=torch.float32).view(n, model.T, model.V)
        got = model.teacher_forced_cached(torch.tensor(chk["classes"]), torch.tensor(chk["tokens"]).view(n, model.T))
        out["checkMaxAbsDiff"] = float((got - ours).abs().max())
    classes = torch.arange(B) % cfg["numClasses"]
    gen = torch.Generator().manual_seed(0)
    model.sample(classes, cached, gen)  # warm-up
    times = []
    c0 = cpu_seconds()
    for _ in range(repeats):
        t0 = time.perf_counter()
        toks = model.sample(classes, cached, gen)
        times.append(time.perf_counter() - t0)
    assert int(toks.min()) >= 0 and int(toks.max()) < cfg["vocabSize"]
    med = sorted(times)[len(times) // 2]
    out.update({"batch": B, "cached": cached, "seconds": times, "medianSeconds": med, "bestSeconds": min(times),
                "tokensPerSecond": B * model.T / min(times), "cpuSecondsTimed": cpu_seconds() - c0})
    return out


def main(argv):
    if argv and argv[0].lstrip().startswith("{"):  # old form: CFG BATCH STEPS
        mode, opts = "train", {"cfg": json.loads(argv[0]), "batch": argv[1], "steps": argv[2]}
    else:
        mode, opts = argv[0], json.loads(argv[1])
    res = train(opts) if mode == "train" else sample(opts) if mode == "sample" else None
    if res is None:
        raise SystemExit(f"unknown mode {mode!r}: use train or sample")
    res.update({"torch": torch.__version__, "threads": threads, "blas": BLAS, "vmHwmMB": vm_hwm_mb(), "cpuSeconds": cpu_seconds()})
    print(json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1:])
