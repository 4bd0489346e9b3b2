"""One decoder layer in plain PyTorch at a model's true widths, random weights: RMSNorm, attention (standard with
a KV cache, or MLA: absorbed for decode, expanded for prefill), RMSNorm, dense MLP. Fused q/k/v and gate/up
matmuls, as engines launch them and the formulas count them. A whole model's decode step chains L such layers
between the embedding lookup and the lm_head."""

from __future__ import annotations

from kvcalc.specs.model import ModelSpec


def build_layer(torch, spec: ModelSpec, batch: int, q: int, context: int, device, dtype):
    """A no-argument callable running one layer on a fixed random input [B, q, d]."""
    x = torch.randn(batch, q, spec.hidden_size, device=device, dtype=dtype)  # [B, q, d]
    layer = layer_forward(torch, spec, batch, q, context, device, dtype)
    return lambda: layer(x)


def build_model_decode(torch, spec: ModelSpec, batch: int, context: int, device, dtype):
    """A no-argument callable running one decode step of the whole model: the embedding rows of B tokens, every
    layer (each with its own weights and KV cache at `context`), the final norm and the lm_head."""
    F = torch.nn.functional
    d, vocab = spec.hidden_size, spec.vocab_size
    embedding = torch.randn(vocab, d, device=device, dtype=dtype)  # [V, d]
    lm_head = torch.randn(vocab, d, device=device, dtype=dtype) * d**-0.5  # [V, d]
    norm = torch.ones(d, device=device, dtype=dtype)
    tokens = torch.randint(vocab, (batch, 1), device=device)  # [B, 1]
    layers = [layer_forward(torch, spec, batch, 1, context, device, dtype) for _ in range(spec.num_layers)]

    def step():
        y = F.embedding(tokens, embedding)  # [B, 1, d]
        for layer in layers:
            y = layer(y)
        return F.linear(F.rms_norm(y, (d,), norm), lm_head)  # [B, 1, V]

    return step


def absorbed_mla_attention(torch, q, latent, d_c: int):
    """MLA decode in the absorbed form as DeepSeek's reference inference code writes it: scores of the absorbed
    queries q [B, h, d_c+d_r] against every cached latent [B, S, d_c+d_r], then their softmax-weighted sum of the
    latents' first d_c entries -> [B, h, d_c]. Two batched GEMMs (m = h) that each read the cache once: PyTorch's
    SDPA has no kernel for a 576-wide head and its fallback expands the latent to every head."""
    scores = torch.bmm(q * q.shape[-1] ** -0.5, latent.transpose(1, 2))  # [B, h, S]
    return torch.bmm(torch.softmax(scores, dim=-1), latent[..., :d_c])  # [B, h, d_c]


def layer_forward(torch, spec: ModelSpec, batch: int, q: int, context: int, device, dtype):
    """One layer as a function of its input [B, q, d], with its weights and KV cache allocated here."""
    F = torch.nn.functional
    a, d = spec.attention, spec.hidden_size
    h = a.num_heads

    def w(out_f, in_f):
        return torch.randn(out_f, in_f, device=device, dtype=dtype) * in_f**-0.5  # [out, in]

    norm = torch.ones(d, device=device, dtype=dtype)
    f = spec.mlp.intermediate_size
    gated = spec.mlp.kind == "gated"
    w_up, w_down = w(2 * f if gated else f, d), w(d, f)

    def mlp(y):
        y = F.rms_norm(y, (d,), norm)
        up = F.linear(y, w_up)
        if gated:
            gate, up = up.chunk(2, dim=-1)
            up = F.silu(gate) * up
        else:
            up = F.gelu(up)
        return F.linear(up, w_down)

    if a.kind != "mla":
        g, dh = a.num_kv_heads, a.head_dim
        wqkv, wo = w((h + 2 * g) * dh, d), w(d, h * dh)  # q, k and v stacked: one GEMM
        k_cache = torch.randn(batch, g, context + q, dh, device=device, dtype=dtype)  # [B, g, S+q, d_h]
        v_cache = torch.randn(batch, g, context + q, dh, device=device, dtype=dtype)

        def attention(y):
            y = F.rms_norm(y, (d,), norm)
            qkv = F.linear(y, wqkv)  # [B, q, (h + 2g) d_h]
            qh = qkv[..., : h * dh].view(batch, q, h, dh).transpose(1, 2)  # [B, h, q, d_h]
            k_cache[:, :, context:] = qkv[..., h * dh : (h + g) * dh].view(batch, q, g, dh).transpose(1, 2)  # KV write
            v_cache[:, :, context:] = qkv[..., (h + g) * dh :].view(batch, q, g, dh).transpose(1, 2)
            o = F.scaled_dot_product_attention(qh, k_cache, v_cache, is_causal=q > 1, enable_gqa=g != h)
            return F.linear(o.transpose(1, 2).reshape(batch, q, h * dh), wo)
    else:
        d_c, d_r, d_n, d_v = a.kv_lora_rank, a.qk_rope_head_dim, a.qk_nope_head_dim, a.v_head_dim
        q_proj = [w(a.q_lora_rank, d), w(h * (d_n + d_r), a.q_lora_rank)] if a.q_lora_rank else [w(h * (d_n + d_r), d)]
        w_kva, w_kvb, wo = w(d_c + d_r, d), w(h * (d_n + d_v), d_c), w(d, h * d_v)
        w_uk = w_kvb.view(h, d_n + d_v, d_c)[:, :d_n]  # [h, d_n, d_c]
        w_uv = w_kvb.view(h, d_n + d_v, d_c)[:, d_n:]  # [h, d_v, d_c]
        latent = torch.randn(batch, 1, context + q, d_c + d_r, device=device, dtype=dtype)  # [B, 1, S+q, d_c+d_r]

        def attention(y):
            y = F.rms_norm(y, (d,), norm)
            qh = y
            for m in q_proj:
                qh = F.linear(qh, m)
            qh = qh.view(batch, q, h, d_n + d_r).transpose(1, 2)  # [B, h, q, d_n+d_r]
            latent[:, 0, context:] = F.linear(y, w_kva)  # KV write: the latent and the shared RoPE key
            if q == 1:  # absorbed: attend over the latent, MQA-like
                q_lat = torch.einsum("bhqn,hnc->bhqc", qh[..., :d_n], w_uk)
                q_abs = torch.cat([q_lat, qh[..., d_n:]], -1).view(batch, h, d_c + d_r)  # [B, h, d_c+d_r]
                o = absorbed_mla_attention(torch, q_abs, latent[:, 0], d_c).view(batch, h, 1, d_c)
                o = torch.einsum("bhqc,hvc->bhqv", o, w_uv)
            else:  # expanded: K and V per head from the fresh latents
                kv = F.linear(latent[:, 0, :, :d_c], w_kvb).view(batch, -1, h, d_n + d_v).transpose(1, 2)
                k = torch.cat([kv[..., :d_n], latent[:, :, :, d_c:].expand(batch, h, -1, d_r)], -1)
                o = F.scaled_dot_product_attention(qh, k, kv[..., d_n:], is_causal=True)
            return F.linear(o.transpose(1, 2).reshape(batch, q, h * d_v), wo)

    def layer(x):
        y = x + attention(x)
        return y + mlp(y)

    return layer
