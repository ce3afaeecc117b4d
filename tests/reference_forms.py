"""The reference implementations' loss formulas, restated element by element.

Each function below re-derives one loss of RepDistiller's ``distiller_zoo`` (and mdistiller's DKD)
with explicit per-sample / per-pair loops in float64, following the order of operations of the
reference code (which we read; we do not vendor it). sot-ray's vectorised implementations must
agree with these to rel 1e-5 on fixed inputs (``tests/test_distillers.py``).
"""

from __future__ import annotations

import math

import torch


def _pool_pair(a, b):
    ha, hb = a.shape[-1], b.shape[-1]
    if ha > hb:
        a = torch.nn.functional.adaptive_avg_pool2d(a, (hb, hb))
    elif hb > ha:
        b = torch.nn.functional.adaptive_avg_pool2d(b, (ha, ha))
    return a, b


def _unit(v, eps=1e-12):
    n = math.sqrt(sum(float(x) ** 2 for x in v))
    return [float(x) / max(n, eps) for x in v]


def kd(s, t, T):
    total = 0.0
    for i in range(s.shape[0]):
        ps, pt = torch.softmax(s[i] / T, 0), torch.softmax(t[i] / T, 0)
        total += sum(float(pt[c] * (pt[c].log() - ps[c].log())) for c in range(s.shape[1]))
    return total * T * T / s.shape[0]


def dkd(s, t, y, alpha, beta, T):
    tckd = nckd = 0.0
    for i in range(s.shape[0]):
        g = int(y[i])
        ps, pt = torch.softmax(s[i] / T, 0), torch.softmax(t[i] / T, 0)
        bs, bt = [float(ps[g]), 1 - float(ps[g])], [float(pt[g]), 1 - float(pt[g])]
        tckd += sum(b * math.log(b / a) for a, b in zip(bs, bt))
        keep = [c for c in range(s.shape[1]) if c != g]
        qs, qt = torch.softmax(s[i, keep] / T, 0), torch.softmax(t[i, keep] / T, 0)
        nckd += sum(float(b * (b.log() - a.log())) for a, b in zip(qs, qt))
    return (alpha * tckd + beta * nckd) * T * T / s.shape[0]


def at(fs, ft, p=2):
    fs, ft = _pool_pair(fs, ft)
    total, b = 0.0, fs.shape[0]
    for i in range(b):
        a_s = _unit(fs[i].pow(p).mean(0).flatten())
        a_t = _unit(ft[i].pow(p).mean(0).flatten())
        total += sum((x - z) ** 2 for x, z in zip(a_s, a_t)) / len(a_s)
    return total / b


def sp(fs, ft):
    b = fs.shape[0]
    vs, vt = fs.reshape(b, -1), ft.reshape(b, -1)
    total = 0.0
    for i in range(b):
        gs = _unit([float(vs[i] @ vs[j]) for j in range(b)])
        gt = _unit([float(vt[i] @ vt[j]) for j in range(b)])
        total += sum((x - z) ** 2 for x, z in zip(gs, gt))
    return total / (b * b)


def cc(es, et):
    d = (es - et).abs()
    return sum(float((d[i] * d[i + 1]).sum()) for i in range(len(d) - 1)) / (len(d) - 1)


def _smooth_l1(a, b):
    out = []
    for x, z in zip(a, b):
        r = abs(x - z)
        out.append(0.5 * r * r if r < 1 else r - 0.5)
    return sum(out) / len(out)


def rkd(fs, ft, w_dist=25.0, w_angle=50.0):
    def dists(e):
        n = len(e)
        d = [[0.0 if i == j else math.sqrt(max(float((e[i] - e[j]).pow(2).sum()), 1e-12))
              for j in range(n)] for i in range(n)]
        pos = [x for row in d for x in row if x > 0]
        mean = sum(pos) / len(pos)
        return [x / mean for row in d for x in row]

    def angles(e):
        n = len(e)
        out = []
        for i in range(n):
            dirs = [_unit(e[j] - e[i]) for j in range(n)]
            for j in range(n):
                for k in range(n):
                    out.append(sum(a * c for a, c in zip(dirs[j], dirs[k])))
        return out

    fs, ft = fs.flatten(1), ft.flatten(1)
    return (w_dist * _smooth_l1(dists(fs), dists(ft))
            + w_angle * _smooth_l1(angles(fs), angles(ft)))


def pkt(fs, ft, eps=1e-7):
    def cond(e):
        n = len(e)
        rows = []
        for v in e:
            nv = math.sqrt(float(v.pow(2).sum()))
            rows.append([float(x) / (nv + eps) for x in v])
        sim = [[(sum(a * c for a, c in zip(rows[i], rows[j])) + 1) / 2 for j in range(n)]
               for i in range(n)]
        return [[x / sum(r) for x in r] for r in sim]

    ps, pt = cond(fs.flatten(1)), cond(ft.flatten(1))
    n = len(ps)
    return sum(pt[i][j] * math.log((pt[i][j] + eps) / (ps[i][j] + eps))
               for i in range(n) for j in range(n)) / (n * n)


def nst(fs, ft):
    fs, ft = _pool_pair(fs, ft)

    def chans(f):
        return [[_unit(f[b, c].flatten()) for c in range(f.shape[1])] for b in range(f.shape[0])]

    cs, ct = chans(fs), chans(ft)

    def poly_mean(a, c):
        vals = [sum(x * z for x, z in zip(u, w)) ** 2
                for ab, cb in zip(a, c) for u in ab for w in cb]
        return sum(vals) / len(vals)

    return poly_mean(ct, ct) + poly_mean(cs, cs) - 2 * poly_mean(cs, ct)


def nce(scores, n_data, eps=1e-7):
    b, m = scores.shape[0], scores.shape[1] - 1
    pn = 1.0 / n_data
    total = 0.0
    for i in range(b):
        pos = float(scores[i, 0])
        total += math.log(pos / (pos + m * pn + eps))
        for j in range(1, m + 1):
            total += math.log(m * pn / (float(scores[i, j]) + m * pn + eps))
    return -total / b


def ab(g_s, g_t, margin=1.0):
    n, bsz = len(g_s), g_s[0].shape[0]
    total = 0.0
    for i, (s, t) in enumerate(zip(g_s, g_t)):
        acc = 0.0
        for x, z in zip(s.flatten().tolist(), t.flatten().tolist()):
            if x > -margin and z <= 0:
                acc += (x + margin) ** 2
            if x <= margin and z > 0:
                acc += (x - margin) ** 2
        total += 2 ** (i - n + 1) * acc / bsz / 1000 * 3
    return total


def fsp(s_feats, t_feats):
    def grams(feats):
        out = []
        for bot, top in zip(feats[:-1], feats[1:]):
            bot, top = _pool_pair(bot, top)
            b, hw = bot.shape[0], bot.shape[2] * bot.shape[3]
            g = [[[float((top[k, i].flatten() * bot[k, j].flatten()).sum()) / hw
                   for j in range(bot.shape[1])] for i in range(top.shape[1])] for k in range(b)]
            out.append(g)
        return out

    total = 0.0
    for gs, gt in zip(grams(s_feats), grams(t_feats)):
        flat = [(a - c) ** 2 for bs, bt in zip(gs, gt) for rs, rt in zip(bs, bt) for a, c in zip(rs, rt)]
        total += sum(flat) / len(flat)
    return total


def ft(fs, ft_):
    fs, ft_ = _pool_pair(fs, ft_)
    diffs = []
    for i in range(fs.shape[0]):
        a = _unit(fs[i].pow(2).mean(0).flatten())
        c = _unit(ft_[i].pow(2).mean(0).flatten())
        diffs += [abs(x - z) for x, z in zip(a, c)]
    return sum(diffs) / len(diffs)
