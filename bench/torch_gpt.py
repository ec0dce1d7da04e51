"""PyTorch reference for `npm run bench`: the same GPT as lib/backbone/gpt.ts
(class-token prefix, target-position embedding, RMSNorm, SwiGLU, causal attention, 2D rotary on pairs,
separate q/k/v projections, untied head), the same batch and AdamW, timed on
this CPU. Prints one JSON object on stdout.

Usage: python3 bench/torch_gpt.py '{"vocabSize":512, ...}' BATCH STEPS
"""
import json, math, os, resource, sys, time

import torch
import torch.nn.functional as F

cfg = json.loads(sys.argv[1])
batch, steps = int(sys.argv[2]), int(sys.argv[3])
threads = int(os.environ.get("ORDERHEAD_TORCH_THREADS", os.cpu_count() or 1))
torch.set_num_threads(threads)
# Debian's torch calls whatever libblas.so.3 points to: OpenBLAS (fast) or the reference BLAS (~20x slower).
_alt = "/etc/alternatives/libblas.so.3-x86_64-linux-gnu"
BLAS = os.path.realpath(_alt) if os.path.exists(_alt) else "unknown"
torch.manual_seed(0)

V, C, d, f, L, H = cfg["vocabSize"], cfg["numClasses"], cfg["dModel"], cfg["dFF"], cfg["nLayer"], cfg["nHead"]
T, hd = cfg["gridH"] * cfg["gridW"], d // cfg["nHead"]


def rotary():
    pairs, half = hd // 2, hd // 4
    cos, sin = torch.ones(T, hd), torch.zeros(T, hd)
    for slot in range(1, T):
        cell = slot - 1
        row, col = divmod(cell, cfg["gridW"])
        for p in range(pairs):
            i = p % half
            ang = (row if p < half else col) * cfg["ropeBase"] ** (-i / half)
            cos[slot, 2 * p : 2 * p + 2] = math.cos(ang)
            sin[slot, 2 * p : 2 * p + 2] = math.sin(ang)
    return cos.view(1, T, 1, hd), sin.view(1, T, 1, hd)


COS, SIN = rotary()


def rope(x):  # x [B, T, H, hd]; pairs (2i, 2i+1) -> (-x[2i+1], x[2i])
    x2 = x.view(*x.shape[:-1], hd // 2, 2)
    rot = torch.stack((-x2[..., 1], x2[..., 0]), -1).view_as(x)
    return x * COS + rot * SIN


class RMSNorm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.g = torch.nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg["normEps"]) * self.g


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.n1, self.n2 = RMSNorm(), RMSNorm()
        lin = lambda a, b: torch.nn.Linear(a, b, bias=False)
        self.wq, self.wk, self.wv, self.wo = lin(d, d), lin(d, d), lin(d, d), lin(d, d)
        self.w1, self.w3, self.w2 = lin(d, f), lin(d, f), lin(f, d)

    def forward(self, x):
        B = x.shape[0]
        h = self.n1(x)
        q = rope(self.wq(h).view(B, T, H, hd)).transpose(1, 2)
        k = rope(self.wk(h).view(B, T, H, hd)).transpose(1, 2)
        v = self.wv(h).view(B, T, H, hd).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
        x = x + self.wo((att @ v).transpose(1, 2).reshape(B, T, d))
        m = self.n2(x)
        return x + self.w2(F.silu(self.w1(m)) * self.w3(m))


class GPT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.tok, self.cls = torch.nn.Embedding(V, d), torch.nn.Embedding(C + 1, d)
        self.tgt = torch.nn.Embedding(T, d)  # target-aware position (raster: slot t predicts cell t)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(L))
        self.norm, self.head = RMSNorm(), torch.nn.Linear(d, V, bias=False)

    def forward(self, tokens, classes):
        x = torch.cat([self.cls(classes)[:, None], self.tok(tokens[:, :-1])], 1) + self.tgt.weight[None]
        for b in self.blocks:
            x = b(x)
        return F.cross_entropy(self.head(self.norm(x)).view(-1, V), tokens.reshape(-1))


model = GPT()
opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.05)
tokens = torch.randint(0, V, (batch, T))
classes = torch.randint(0, C, (batch,))


def step():
    opt.zero_grad(set_to_none=True)
    loss = model(tokens, classes)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


step()  # warm-up
times = []
for _ in range(steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
print(json.dumps({
    "torch": torch.__version__, "threads": threads, "blas": BLAS,
    "params": sum(p.numel() for p in model.parameters()),
    "stepMs": [t * 1000 for t in times], "medianMs": sorted(times)[len(times) // 2] * 1000,
    "peakRssMB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
