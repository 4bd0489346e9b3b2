"""Tensor parallelism over tp GPUs (Megatron-style: heads and MLP columns split, two all-reduces per layer), and
pipeline parallelism over pp stages of tp GPUs each.

Pipeline: each stage holds ceil(L / pp) layers (the first the embedding, the last the lm_head) and their KV cache.
A batch of B sequences runs as m = min(B, pp) micro-batches of B / m; a token passes every stage, so a decode step
of the whole batch takes the full depth at B / m sequences plus pp - 1 activation sends of (B / m) x d x b_a bytes;
with m < pp stages idle (the bubble). A prefill of B prompts fills the pipeline: (m + pp - 1) / pp times the full
depth at B / m prompts.

Expert parallelism over ep GPUs (SGLang's --enable-dp-attention --ep, vLLM's data parallel + expert parallel):
each GPU holds num_experts / ep of the routed experts; attention, dense layers and shared experts run in ep / tp
data-parallel replicas of tp GPUs, each serving B / (ep / tp) of the sequences. The routed experts see every
replica's tokens, spread evenly over the GPUs: a GPU computes 1 / ep of the batch's expert work. Each MoE layer
dispatches a GPU's tokens to the experts' GPUs and combines the results: two all-to-alls of
(B / dp) x top_k x d x b_a x (ep - 1) / ep bytes each way, one way over the link. At ep = tp (one replica) every
GPU already holds every token, and the experts' outputs are all-reduced as under tensor parallelism.

Per GPU: weights / tp, but for the norms, MoE routers, MLA's q_a and kv_a projections and, when g < tp, one
whole KV head's k and v projections, which every GPU keeps whole (params.tp_whole_bytes); KV heads max(g / tp, 1)
(replicated when g < tp); MLA's one latent is replicated on every GPU (not split by sequence here). Each
all-reduce moves B * q * d * b_a bytes and costs 2 (tp - 1) / tp * bytes / link bandwidth (ring). Datasheets give
the link's bidirectional total (NVLink 4: 900 GB/s = 450 each way); a ring sends one way on each link, so it runs
at half. A switch (NVSwitch) gives any
group that whole bandwidth; a fully connected mesh without one (MI300X: 7 Infinity Fabric links, 896 GB/s in all)
gives a group of tp GPUs only the tp - 1 links to its peers; a group beyond the GPUs the interconnect joins (a
bridged pair, an 8-GPU board) crosses the slower scale-out link, PCIe or the NICs, a node's rings spread over all of
its NICs where each GPU has one (group_link_bandwidth; an all-to-all's bytes for the GPU's own node stay on the
interconnect: alltoall_link_bandwidth). A pipeline stage sends each GPU's 1 / tp slice to its peer in the next stage,
which all-gathers them (stage_link_bandwidth). An engine
profile's measured all-reduce curve gives the latency (formulas/kernel_time.py); without one, NCCL's own cost model
for a ring all-reduce does (nccl_ring_latency): the faster of its LL protocol (low latency, a quarter of the
bandwidth) and Simple (full bandwidth, more latency per step). The speed of light keeps the bare ring.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

from kvcalc.errors import KvcalcError
from kvcalc.formulas._array import maximum, minimum
from kvcalc.formulas.cost import Cost
from kvcalc.formulas.forward import Op
from kvcalc.formulas.kernel_time import allreduce_curve_seconds, alltoall_curve_seconds
from kvcalc.specs.hardware import HardwareSpec
from kvcalc.specs.model import ModelSpec
from kvcalc.specs.profile import AllReduceCurve


def attention_groups(ep: int, tp: int) -> int:
    """Data-parallel attention groups of an expert-parallel replica, ep / tp, each with its own sequences, KV pool and
    scheduler; 1 without expert parallelism beyond the tensor-parallel group."""
    return ep // tp if ep > tp else 1


def group_step_budget(pooled: int, ep: int, tp: int) -> int:
    """Tokens one attention group's scheduler takes a step: the replica's pooled step budget over its groups."""
    return pooled // attention_groups(ep, tp)


def stage_layer_fraction(model: ModelSpec, pp: int) -> float:
    """Fraction of the layers (and of the KV cache) the heaviest of pp pipeline stages holds: ceil(L / pp) / L."""
    return math.ceil(model.num_layers / pp) / model.num_layers


def microbatches(batch, pp: int):
    """Micro-batches a batch of B sequences runs as in a pp-stage pipeline: min(B, pp)."""
    return minimum(batch, pp)


def fullest_share(batch, parts):
    """The sequences of the fullest of `parts` micro-batches or data-parallel replicas a batch is spread over:
    B / parts, and at least one whole sequence where there is one (a sequence is not split)."""
    return maximum(batch / parts, minimum(batch, 1.0))


def pipeline_send_seconds(model: ModelSpec, tokens, b_a: float, pp: int, link_bandwidth_Bps: float | None):
    """pp - 1 sends from stage to stage, one way over the link, of the hidden states (tokens x d x b_a bytes) and,
    in a model whose RMSNorm takes the residual in (the Llama family's fused add-and-norm), the residual beside them:
    vLLM's and SGLang's decoder models hand the next stage both (vLLM's LlamaModel.forward returns
    IntermediateTensors({"hidden_states", "residual"}), SGLang's PPProxyTensors the same two), where a LayerNorm
    model adds its residual inside the layer and sends the hidden states alone (vLLM's GPT2Model; the thirty-seventh
    audit, links 4: the residual had been left out, half the bytes)."""
    if pp == 1:
        return 0.0
    if not link_bandwidth_Bps:
        raise KvcalcError("--gpu: pipeline parallelism needs the spec's interconnect_bandwidth_GBps, which it does not list")
    tensors = 2 if model.norm == "rmsnorm" else 1
    return (pp - 1) * tensors * tokens * model.hidden_size * b_a / (link_bandwidth_Bps / 2)


def kv_shard_fraction(model: ModelSpec, tp: int) -> float:
    """Fraction of each token's KV cache one GPU holds: max(g / tp, 1) / g (1 for MLA: the latent is replicated)."""
    g = model.attention.kv_heads
    return max(g / tp, 1) / g


def state_shard_fraction(model: ModelSpec, tp: int) -> float:
    """Fraction of a sequence's linear-attention (or SSM) state one GPU holds: the engines split it by its value heads
    over the group (Gated DeltaNet's, Mamba-2's heads, Mamba's channels), max(h_v / tp, 1) / h_v, whatever the
    softmax layers' KV heads (the third audit: Qwen3-Next's state had been split as its 2 KV heads, 3.3x too much
    a GPU at TP 8), with Mamba-2's B and C conv channels kept by whole groups (LinearAttentionSpec.state_bytes; the
    fortieth audit, hybrid 4), weighed at 2-byte elements (an fp32 recurrent state shifts Mamba-2's share a
    little); the KV fraction for a model without such layers. The bytes themselves: kv.linear_state_bytes(model, b,
    tp)."""
    la = model.linear_attention
    if la is None:
        return kv_shard_fraction(model, tp)
    return la.state_bytes(2, tp) / la.state_bytes(2)


def layer_kinds(model: ModelSpec) -> list[str] | None:
    """Each layer's cache in order: 'global' (the whole context), 'window' (sliding_window tokens), 'linear' (a fixed
    state) or 'none' (a layer_pattern's MLP block); None where the spec gives counts but not places (global_count,
    linear_attention.layers or parallel). Places as the specs define them: a layer_pattern's blocks; full attention
    every linear_attention.full_every-th layer; a global layer every attention.global_every-th attention layer."""
    a, la = model.attention, model.linear_attention
    if model.layer_pattern is not None:
        if a.sliding_window is not None:
            return None
        return [{"*": "global", "M": "linear"}.get(block, "none") for block in model.layer_pattern]
    if la is not None and (la.parallel or la.full_every is None):
        return None
    if a.sliding_window is not None and a.global_count is not None:
        return None
    kinds, attention = [], 0
    for i in range(model.num_layers):
        if la is not None and (i + 1) % la.full_every:
            kinds.append("linear")
            continue
        attention += 1
        windowed = a.sliding_window is not None and (a.global_every is None or attention % a.global_every)
        kinds.append("window" if windowed else "global")
    return kinds


def sequence_bytes_per_gpu(model: ModelSpec, context, b_kv: float, tp: int = 1, pp: int = 1):
    """Bytes one sequence at `context` holds on one GPU of a tp x pp group (the heaviest stage's): its softmax KV by
    kv_shard_fraction, its linear-attention state by state_shard_fraction. Under pipeline stages, the stage whose own
    layers hold the most at this context (vLLM's split, params.pipeline_stage_layers; layer_kinds): Gemma 3's global
    layers or Qwen3-Next's full-attention ones fall unevenly on the stages (the twelfth audit, E8: the mean layer had
    put Gemma-3-27B's heaviest stage at PP 8 1.52x short); the mean layer's share where the places are unknown.
    Works on numpy arrays of contexts."""
    from kvcalc.formulas.kv import cached_tokens, kv_bytes_per_sequence, kv_bytes_per_token_per_layer, linear_state_bytes
    from kvcalc.formulas.params import pipeline_stage_layers

    state, shard = linear_state_bytes(model, b_kv), linear_state_bytes(model, b_kv, tp)
    kinds = layer_kinds(model) if pp > 1 else None
    if kinds is None or kinds.count("global") != model.global_layers or kinds.count("linear") != model.linear_layers:
        return ((kv_bytes_per_sequence(model, context, b_kv) - state) * kv_shard_fraction(model, tp)
                + shard) * stage_layer_fraction(model, pp)
    token = kv_bytes_per_token_per_layer(model.attention, b_kv, record=False) * kv_shard_fraction(model, tp)
    windowed = cached_tokens(context, model.attention.sliding_window)
    one_state = shard / model.linear_layers if model.linear_layers else 0.0
    heaviest, start = None, 0
    for n in pipeline_stage_layers(len(kinds), pp):
        stage = kinds[start:start + n]
        start += n
        held = (token * (stage.count("global") * context + stage.count("window") * windowed)
                + stage.count("linear") * one_state)
        heaviest = held if heaviest is None else maximum(heaviest, held)
    return heaviest


def kv_bytes_all_gpus(model: ModelSpec, batch, context, b_kv: float, tp: int = 1):
    """Bytes the KV cache of B sequences at `context` takes on all the GPUs together, each GPU's share summed [B]:
    B * tp * one GPU's share of a sequence over every layer (sequence_bytes_per_gpu at pp = 1). What every GPU keeps
    whole counts once a GPU: MLA's latent (kv_shard_fraction 1: tp copies) and, past g KV heads, a whole head on
    each GPU (vLLM's QKVParallelLinear, vllm/model_executor/layers/linear.py: num_kv_head_replicas = tp / g; so
    tp / g copies); a linear-attention state tp x one GPU's share (kv.linear_state_bytes: its value heads split,
    Mamba-2's B and C groups whole where they do not divide). Pipeline stages split the layers, each layer on one
    stage, so the stages' shares add up to the pp = 1 figure (an uneven split moves layers between stages, not their
    sum); under expert parallelism a sequence lives whole in one data-parallel replica of tp GPUs, so the replicas add up to one group holding the batch. B times kv_bytes_per_sequence where
    nothing is replicated (the fortieth audit, outputs 1: estimate's kv_cache.bytes, documented as all GPUs', had
    been that one copy, 8x short for DeepSeek-V3 at TP 8). Works on numpy arrays of batches and contexts."""
    return batch * tp * sequence_bytes_per_gpu(model, context, b_kv, tp)


def shard_op(op: Op, model: ModelSpec, tp: int) -> Op:
    """One GPU's share of an operator: FLOPs, weights and activations / tp; KV by kv_shard_fraction."""
    if tp == 1:
        return op
    c = op.cost
    kv = state_shard_fraction(model, tp) if op.op_class == "linear_attention" else kv_shard_fraction(model, tp)
    w = op.whole or Cost()  # what every GPU computes whole (DeepSeek-V3.2's indexer: the twentieth audit, N2, where
    # dividing it had put a 65,536-token prefill at TP 8 under its speed of light)
    shard = Cost(
        flops=(c.flops - w.flops) / tp + w.flops, weight_bytes=(c.weight_bytes - w.weight_bytes) / tp + w.weight_bytes,
        kv_read_bytes=c.kv_read_bytes * kv, kv_write_bytes=c.kv_write_bytes * kv,
        act_bytes=(c.act_bytes - w.act_bytes) / tp + w.act_bytes,
    )
    # Attention work items are (sequence, KV head) pairs: a GPU keeps its share of the KV heads. GEMM input elements
    # are left whole (column-parallel layers read the whole input on every GPU).
    items = op.items_per_kernel * kv if op.engine == "attention" else op.items_per_kernel
    return replace(op, cost=shard, items_per_kernel=items)


def scale_out_missing(hw: HardwareSpec, flag: str, what: str) -> KvcalcError:
    """The error for GPUs beyond what the interconnect joins on a spec that gives no scale-out link."""
    return KvcalcError(f"{flag}: {hw.name}'s interconnect joins {hw.scale_up_gpus} GPUs; {what}, which needs the "
                       "spec's scale_out_bandwidth_GBps, which it does not list")


def group_link_bandwidth(hw: HardwareSpec, tp: int) -> float | None:
    """Bidirectional bandwidth one GPU has to the rest of its tp-GPU group [B/s], None where the spec lists none: the
    rate its ring all-reduce (or a pipeline's all-gather) runs at.

    Behind a switch: the interconnect's total. In a fully connected mesh of peer links: total * min(tp - 1, links)
    / links (one link per peer). A group larger than the GPUs the interconnect joins crosses the scale-out link. Where
    every GPU has a NIC of its own (scale_out_nic_per_gpu: the DGX datasheets' one ConnectX per GPU) NCCL runs a ring
    channel per NIC, each crossing between nodes through a different GPU's NIC, so a node's crossings spread over all
    of its scale_up_gpus NICs: scale_out x scale_up_gpus, at most the interconnect the ring also runs over inside
    the node. The fortieth audit, comms 1: TP 16 over two HGX H100 nodes had run at one NIC, a bus bandwidth
    of 50 GB/s, where 32 H100s in 4 nodes of 8 x 400 Gb/s InfiniBand measure 330.93 GB/s at 8 GiB (nccl-tests
    all_reduce_perf, NCCL 2.24.3, Voltage Park with AI @ Georgia Tech: https://git.onestrm.cn/aigatech/vpbenchmarking;
    the log, github.com/ZiyanIshani/vpbenchmarking at e55fe74, results/nccl/nccl_multinode/nccl_allreduce_20260224_
    225706.txt); now 400 GB/s at the speed of light. Otherwise (a bridged pair's PCIe, a spec that does not say) one
    GPU's scale-out link bounds the ring."""
    if hw.scale_up_gpus is not None and tp > hw.scale_up_gpus:
        if hw.scale_out_bandwidth_GBps is None:
            # a group of tp GPUs: a tensor-parallel group, an expert-parallel one or a pipeline's stages (the
            # twenty-third audit, F8: --tp 1 --ep 16 had been blamed on tensor parallelism)
            raise scale_out_missing(hw, "--gpu", f"a group of {tp} (tensor, expert or pipeline parallel) crosses it")
        out = hw.scale_out_bandwidth_GBps * 1e9
        if not hw.scale_out_nic_per_gpu:
            return out
        inside = domain_link_bandwidth(hw, hw.scale_up_gpus)
        nics = out * hw.scale_up_gpus  # a ring channel per NIC of the node, each at one NIC's rate
        return nics if inside is None else min(inside, nics)
    return domain_link_bandwidth(hw, tp)


def domain_link_bandwidth(hw: HardwareSpec, n: int) -> float | None:
    """Bidirectional bandwidth one GPU has to the other n - 1 of a group inside the scale-up domain [B/s]: the
    interconnect's total behind a switch, total * min(n - 1, links) / links over a mesh's peer links; None where the
    spec lists none."""
    if not hw.interconnect_bandwidth_GBps:
        return None
    total, links = hw.interconnect_bandwidth_GBps * 1e9, hw.interconnect_peer_links
    return total if links is None else total * min(n - 1, links) / links


def alltoall_link_bandwidth(hw: HardwareSpec, ep: int) -> float | None:
    """The bidirectional bandwidth at which an all-to-all over ep GPUs moves the (ep - 1) / ep of a GPU's bytes that
    leave it [B/s] (alltoall_seconds' convention), None where the spec lists none. Inside the scale-up domain, or
    where the spec does not give a NIC per GPU: group_link_bandwidth. Past a domain of g GPUs with one
    (scale_out_nic_per_gpu) only the (ep - g) / ep bound for other nodes crosses the GPU's own NIC, while the
    (g - 1) / ep for its own node goes over the interconnect at the same time; the slower of the two is the time,
    t ~ max((g - 1) / interconnect, (ep - g) / scale_out), and the figure returned, (ep - 1) / that max, gives it to
    (ep - 1) / ep of the bytes. The fortieth audit, comms 1: EP 16 over two HGX H100 nodes had sent 15/16 of the
    bytes through the 50 GB/s NIC, where 8/16 go there (1.9x slow; EP 32, 31/32 for 24/32)."""
    g = hw.scale_up_gpus
    if g is None or ep <= g or not hw.scale_out_nic_per_gpu:
        return group_link_bandwidth(hw, ep)
    if hw.scale_out_bandwidth_GBps is None:  # group_link_bandwidth's refusal: no scale-out link to cross
        return group_link_bandwidth(hw, ep)
    inside, out = domain_link_bandwidth(hw, g), hw.scale_out_bandwidth_GBps * 1e9
    if inside is None:
        return out
    return (ep - 1) / max((g - 1) / inside, (ep - g) / out)


def beyond_node(hw: HardwareSpec, tp: int, ep: int = 1) -> str | None:
    """The warning for a tensor- or expert-parallel group of PCIe cards larger than one node: a server holds
    node_gpus of them, so the group's collectives cross the network between servers, which a PCIe card's spec does not
    state (it has no scale_up_gpus to bound the link). Such a group is timed over PCIe, no faster than the largest
    measured group (engines/links.py), which the network may not reach (the thirty-third audit, links 1's rest)."""
    group = max(tp, ep)
    if hw.topology != "pcie" or hw.scale_up_gpus is not None or group <= hw.node_gpus:
        return None
    nodes = -(-group // hw.node_gpus)
    return (f"--tp/--ep: a group of {group} {hw.name} GPUs spans {nodes} servers of {hw.node_gpus} (node_gpus), so "
            "its collectives cross the network between them, which the spec does not give: they are timed over "
            "PCIe, no faster than the largest measured group, and may be optimistic")


def stage_link_bandwidth(hw: HardwareSpec, tp: int, pp: int) -> float | None:
    """The link one stage-to-stage send of a pipeline of pp stages of tp GPUs runs at [B/s, bidirectional: a send of
    S bytes takes S / (this / 2)].

    vLLM and SGLang split a stage's hidden states over its tp ranks: each sends its 1 / tp slice to its peer in the
    next stage, and that stage all-gathers the slices over its own group (vLLM's GroupCoordinator.send_tensor_dict
    and recv_tensor_dict with all_gather_group=get_tp_group(), "send-allgather: send only a slice, then do
    allgather", vllm/distributed/parallel_state.py at 0c175ae; SGLang's scheduler_pp_mixin.py at 8da8de1,
    send_tensor_dict(..., all_gather_group=self.attn_tp_group)). A send is then S / tp over one GPU's link to its peer
    and (tp - 1) / tp of S over the group's (group_link_bandwidth(tp)), one after the other:
    1 / (1 / (tp x peer) + (tp - 1) / (tp x group)). Where the peer link is one GPU's whole link (a switch, PCIe)
    that is the whole tensor over it, the figure as before. It is less where
    - a mesh of peer links (interconnect_peer_links) joins the GPUs: a GPU reaches its peer over one link, total /
      links, not the tp x pp group's share of all of them (the fortieth audit, comms 2: MI300X at PP 8 had sent over
      448 GB/s each way where the one Infinity Fabric link to the next stage carries 64, each send 7x fast, the same
      fix as the disaggregated KV transfer's, formulas/workload.kv_transfer_seconds);
    - the tp x pp GPUs span nodes and each GPU has a NIC of its own (scale_out_nic_per_gpu): a rank's slice crosses
      its own NIC, the tp slices at once (comms 2: the whole tensor had crossed one 50 GB/s NIC, tp x slow on the
      wire); every send is timed as one that crosses nodes.
    Otherwise (a bridged pair's PCIe past the pair) the whole tensor over group_link_bandwidth(tp x pp), as before;
    halved on PCIe cards without peer-to-peer (pcie_p2p false: GeForce), whose sends NCCL's shared-memory transport
    copies through host memory, each byte crossing PCIe twice, as pcie_allreduce_curve halves their all-reduces (the
    thirty-third audit, links 8: a GeForce pipeline's sends had been 2x fast)."""
    gpus = tp * pp
    beyond = hw.scale_up_gpus is not None and gpus > hw.scale_up_gpus
    if beyond and hw.scale_out_nic_per_gpu and hw.scale_out_bandwidth_GBps is not None:
        peer = hw.scale_out_bandwidth_GBps * 1e9
    elif not beyond and hw.interconnect_peer_links and hw.interconnect_bandwidth_GBps:
        peer = domain_link_bandwidth(hw, 2)  # one peer link of the mesh
    else:
        bw = group_link_bandwidth(hw, gpus)
        return bw / 2 if bw and hw.topology == "pcie" and hw.pcie_p2p is False else bw
    gather = group_link_bandwidth(hw, tp) if tp > 1 else None
    return peer if not gather else 1 / (1 / (tp * peer) + (tp - 1) / (tp * gather))


def group_link_label(hw: HardwareSpec, tp: int, alltoall: bool = False) -> str:
    """Which link the all-reduces (alltoall: the all-to-alls) of a tp-GPU group run over, in words."""
    if tp == 1:
        return "none (one GPU)"
    if hw.scale_up_gpus is not None and tp > hw.scale_up_gpus:
        out = hw.scale_out_bandwidth_GBps
        said = (f"{tp} GPUs exceed the {hw.scale_up_gpus} that {hw.interconnect or 'the interconnect'} joins: the "
                f"scale-out link, " + (f"{out:g} GB/s bidirectional per GPU" if out else "not in the spec"))
        if not out or not hw.scale_out_nic_per_gpu:
            return said
        if alltoall:
            return (said + f", a NIC each; {tp - hw.scale_up_gpus}/{tp} of a GPU's bytes cross its NIC while "
                    f"{hw.scale_up_gpus - 1}/{tp} stay on {hw.interconnect or 'the interconnect'}: "
                    f"{alltoall_link_bandwidth(hw, tp) / 1e9:.4g} GB/s for the {tp - 1}/{tp} that leave it")
        return (said + f", a NIC each; a ring channel per NIC spreads a node's crossings over its "
                f"{hw.scale_up_gpus} NICs: {group_link_bandwidth(hw, tp) / 1e9:g} GB/s bidirectional per GPU")
    bw = group_link_bandwidth(hw, tp)
    return f"{hw.interconnect or 'interconnect'}, {bw / 1e9:g} GB/s bidirectional per GPU" if bw else "unknown"


# NCCL's ring all-reduce cost model (src/graph/tuning.cc at github.com/NVIDIA/nccl commit 01afd20a): latencies in us,
# a base per protocol and a hardware latency per ring step, by link class; the LL protocol runs at 1/4 of the bus
# bandwidth for an all-reduce. Ring steps: 2 (n - 1), of which 2 (nodes - 1) cross the network; LL's intra-node step
# latency is 1.8x when the ring spans nodes. These are NCCL 2.7's constants (2020); the NCCL 2.27-2.29 the profiles'
# tables were measured with has retuned them (a ring LL base of 6.6 us, a network Simple step of 14 us, an LL128
# protocol this leaves out), so a ring no measured curve covers (a group past the NVLink domain) runs on 2020's
# latencies: a cross-node TP 16 LL all-reduce 32.7 us where today's give about 42 (the thirty-third audit, links 6).
NCCL_RING_BASE_US = {"LL": 3.6, "Simple": 8.4}
NCCL_RING_STEP_US = {"nvlink": {"LL": 0.47, "Simple": 3.4}, "pci": {"LL": 1.0, "Simple": 5.7},
                     "net": {"LL": 2.7, "Simple": 9.6}}
NCCL_LL_BANDWIDTH = 1 / 4


@dataclass(frozen=True)
class NcclRing:
    """The hardware an n-GPU ring runs over, in NCCL's classes: the link within a node and the nodes it spans."""

    gpus: int
    intra: str  # "nvlink" (NVLink, Infinity Fabric) or "pci"
    nodes: int

    def latency_s(self, protocol: str) -> float:
        steps, inter = 2 * (self.gpus - 1), 2 * (self.nodes - 1)
        intra = NCCL_RING_STEP_US[self.intra][protocol] * (1.8 if self.nodes > 1 and protocol == "LL" else 1.0)
        network = inter * NCCL_RING_STEP_US["net"][protocol]
        return (NCCL_RING_BASE_US[protocol] + (steps - inter) * intra + network) * 1e-6


def nccl_ring(hw: HardwareSpec, gpus: int) -> NcclRing:
    """The ring of a group of `gpus`: beyond the GPUs an NVLink or Infinity Fabric domain joins it spans nodes over
    the network, except a bridged pair's, whose scale-out is PCIe in the same node."""
    link = (hw.interconnect or "PCIe").lower()
    intra = "pci" if link.startswith("pcie") else "nvlink"
    beyond = hw.scale_up_gpus is not None and gpus > hw.scale_up_gpus
    if beyond and "bridge" in link:
        return NcclRing(gpus, "pci", 1)
    return NcclRing(gpus, intra, math.ceil(gpus / hw.scale_up_gpus) if beyond else 1)


def allreduce_seconds(model: ModelSpec, tokens, b_a: float, tp: int, link_bandwidth_Bps: float | None,
                      curve: AllReduceCurve | None = None, ring: NcclRing | None = None,
                      floor: tuple[AllReduceCurve, int] | None = None):
    """One all-reduce of tokens * d * b_a bytes per residual block (two a layer: attention and MLP), n of them: with a
    measured curve n (t0 + 2 (tp-1)/tp * bytes / bus bandwidth), never below the bare transfer over the spec's link
    (a curve measured on a faster link than the spec in use lists cannot beat that spec's speed of light); else the
    ring's transfer 2 (tp-1)/tp * bytes / (link / 2), link the datasheet's bidirectional total, and with a ring its
    NCCL latency: n * min(LL latency + 4 x the transfer, Simple latency + the transfer), and with a floor (the
    largest measured group smaller than tp, its curve and size: allreduce_curves) never below what that group takes
    for the same bytes. Without either: the bare transfer (the speed of light)."""
    if tp == 1:
        return 0.0
    per_allreduce = tokens * model.hidden_size * b_a
    if curve is not None:
        measured = allreduce_curve_seconds(curve, per_allreduce, tp)
        if link_bandwidth_Bps:
            measured = maximum(measured, 2 * (tp - 1) / tp * per_allreduce / (link_bandwidth_Bps / 2))
        return model.residual_blocks * measured
    if not link_bandwidth_Bps:
        raise KvcalcError("--gpu: tensor parallelism needs the spec's interconnect_bandwidth_GBps, which it does not list")
    transfer = 2 * (tp - 1) / tp * per_allreduce / (link_bandwidth_Bps / 2)
    if ring is None:
        return model.residual_blocks * transfer
    ll = ring.latency_s("LL") + transfer / NCCL_LL_BANDWIDTH
    modelled = minimum(ll, ring.latency_s("Simple") + transfer)
    if floor is not None:
        modelled = maximum(modelled, allreduce_curve_seconds(floor[0], per_allreduce, floor[1]))
    return model.residual_blocks * modelled


def allreduce_curves(curves: dict[str, AllReduceCurve], tp: int) -> tuple[AllReduceCurve | None,
                                                                         tuple[AllReduceCurve, int] | None]:
    """(a profile's measured all-reduce curve for tp GPUs, else None; and where it has none, the largest measured
    group smaller than tp with its size, the floor allreduce_seconds keeps the ring model above). A larger group
    moves more bytes a GPU over more steps, never fewer: the thirty-third audit, links 1 and 2, found L40S groups of
    16 timed from the datasheet's PCIe at 32 GB/s where NCCL's measured TP 8 runs at 1.4 GB/s (decode all-reduce
    10 ms at TP 16, 29 ms at TP 8), and GB300 TP 32 faster than its measured TP 16."""
    exact = curves.get(f"tp{tp}")
    if exact is not None or tp <= 1:
        return exact, None
    smaller = [int(k.removeprefix("tp")) for k in curves if int(k.removeprefix("tp")) < tp]
    return None, ((curves[f"tp{max(smaller)}"], max(smaller)) if smaller else None)


# PCIe x16 bidirectional bandwidth by generation [GB/s]: 8, 16, 32 GT/s per lane (PCI-SIG, PCIe 3.0/4.0/5.0 base
# specifications), 128b/130b coding, 16 lanes, both directions.
PCIE_X16_GBps = {3: 32, 4: 64, 5: 128}


def pcie_generation(bandwidth_GBps: float) -> int:
    """The PCIe generation whose x16 link a spec's bidirectional bandwidth names (the nearest of 3, 4, 5)."""
    return min(PCIE_X16_GBps, key=lambda g: abs(math.log(bandwidth_GBps / PCIE_X16_GBps[g])))


def pcie_allreduce_curve(measured: AllReduceCurve, measured_link_GBps: float, link_GBps: float,
                         p2p: bool = True) -> AllReduceCurve:
    """A collective measured over one PCIe system, carried to another PCIe link: the fixed latency t0 kept, the bus
    bandwidth scaled by the links' ratio, link / measured link (a ring over PCIe is bound by the link), and halved
    without peer-to-peer, a stand-in for NCCL's shared-memory transport, which stages every chunk through host
    memory (NCCL's transports: P2P when the GPUs can reach each other, else SHM through the host,
    https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html#nccl-p2p-disable). The halving is not a
    per-link count (a staged byte goes up the sender's link and down the receiver's, once each, as a P2P byte does):
    what SHM costs is the host's memory bandwidth, its copies and a longer hop, which the host decides. Published runs
    without peer-to-peer span 2.2-3.7 GB/s (2-4 RTX 4090s in containers, kalavai-net/kalavai-client scripts/README.md)
    to 28 GB/s (8 RTX 5090s on two Xeon 8480+, NVIDIA/nccl issue 1639); kvcalc's halved RTX PRO 6000 table gives an
    RTX 5090 at TP 8 10.1 GB/s (docs/validation.md, Left: Hardware H3)."""
    bus = measured.bus_bandwidth_GBps * link_GBps / measured_link_GBps * (1.0 if p2p else 0.5)
    return AllReduceCurve(t0_us=measured.t0_us, bus_bandwidth_GBps=bus)


def check_ep(ep: int, model: ModelSpec, tp: int) -> None:
    """Expert parallelism needs a MoE model, ep a multiple of tp, and ep dividing the routed experts."""
    from kvcalc.checks import MAX_GPUS, check_int

    check_int("--ep", ep, 1, MAX_GPUS)
    if ep == 1:
        return
    if model.moe is None:
        raise KvcalcError(f"--ep: {model.name} has no experts to spread (expert parallelism needs a MoE model)")
    if ep % tp:
        raise KvcalcError(f"--ep: {ep} GPUs must be a multiple of --tp {tp} (data-parallel attention replicas of tp)")
    if model.moe.num_experts % ep:
        raise KvcalcError(f"--ep: {ep} GPUs must divide {model.name}'s {model.moe.num_experts} routed experts: kvcalc "
                          "models an even split, as SGLang and TensorRT-LLM require (vLLM places a remainder on some ranks, "
                          "fused_moe determine_expert_map, which kvcalc does not model)")


def shard_experts(op: Op, ep: int, model: ModelSpec | None = None, tokens=None) -> Op:
    """The busiest GPU's share of the routed experts under expert parallelism: 1 / ep of the work and activations,
    and, given the model and the step's tokens, the expert weights of the GPU that holds the most of the experts they
    touch (busiest_expert_share): each MoE layer's combine waits for it (the seventh audit, B2: at ep 8 and batch 1 a
    token's 8 experts of Qwen3-30B-A3B's 128 put 2.5 on the busiest GPU, not 1); 1 / ep without them."""
    c = op.cost
    share = busiest_expert_share(model, tokens, ep) if model is not None and tokens is not None else 1 / ep
    return replace(op, cost=Cost(flops=c.flops / ep, weight_bytes=c.weight_bytes * share, kv_read_bytes=0.0,
                                 kv_write_bytes=0.0, act_bytes=c.act_bytes / ep))


def busiest_expert_share(model: ModelSpec, tokens, ep: int):
    """The fraction of a step's touched experts that the busiest of ep GPUs holds, each GPU holding n = E / ep of
    the E experts and each of T tokens choosing top_k of them at random. About S = E (1 - (1 - k / E)^T) experts are
    touched; given S, the touched set is any S of the E alike (the tokens choose exchangeably), so the GPUs' counts
    are multivariate hypergeometric and the busiest GPU's expected count is exact (_busiest_given_touched), taken at
    S's mean between its whole neighbours. Batch 1 of Llama-4-Scout (1 of 16 experts) at ep 16: the one expert
    touched is on one GPU, share 1; Qwen3-30B-A3B (8 of 128) at ep 8: 2.54 of the 8, as a simulation of the draws
    gives; from about 64 tokens every expert of every GPU is touched and the share is 1 / ep. Numbers or numpy
    arrays. (The seventh audit's normal approximation of a binomial was up to 51 % low at small n: the eighth, V1.)"""
    if ep == 1:
        return 1.0
    E, k = model.moe.num_experts, model.moe.top_k
    touched = E * (1 - (1 - k / E) ** maximum(tokens, 0))
    if E > MAX_EXACT_EXPERTS:  # C(E, S) past a float's range: the normal approximation, at least one whole expert
        from statistics import NormalDist

        n, untouched = E / ep, 1 - touched / E
        z = NormalDist().inv_cdf((ep - 0.375) / (ep + 0.25))
        busiest = maximum(minimum(touched, 1), minimum(n, n * (1 - untouched) + z * (n * untouched * (1 - untouched)) ** 0.5))
    else:
        import numpy as np

        busiest = np.interp(touched, np.arange(E + 1), _busiest_given_touched(E, ep))
        busiest = float(busiest) if np.ndim(busiest) == 0 else busiest
    return maximum(busiest, 1e-300) / maximum(touched, 1e-300)


MAX_EXACT_EXPERTS = 1000  # C(1000, 500) ~ 2.7e299 still fits a float


@functools.lru_cache(maxsize=32)
def _busiest_given_touched(E: int, ep: int):
    """E[the most touched experts on one GPU | S touched], S = 0 ... E, for E experts laid out E / ep a GPU and the
    touched set uniform among the S-subsets: E[max] = sum over j = 1 ... n of 1 - P(every GPU holds fewer than j),
    and P(every GPU < j) = [x^S] (sum_{i<j} C(n, i) x^i)^ep / C(E, S) (counting the S-subsets that leave each GPU
    fewer than j)."""
    import numpy as np

    n = E // ep
    total = np.array([math.comb(E, s) for s in range(E + 1)], dtype=float)
    most = np.zeros(E + 1)
    for j in range(1, n + 1):
        base, power, left = np.array([float(math.comb(n, i)) for i in range(j)]), np.array([1.0]), ep
        while left:  # (sum_{i<j} C(n, i) x^i)^ep by squaring, each product cut at x^E
            if left & 1:
                power = np.convolve(power, base)[:E + 1]
            left >>= 1
            if left:
                base = np.convolve(base, base)[:E + 1]
        below = np.zeros(E + 1)
        below[:power.size] = power
        most += 1 - below / total
    return most


def alltoall_seconds(model: ModelSpec, local_tokens, b_a: float, ep: int, link_bandwidth_Bps: float | None,
                     curve: AllReduceCurve | None = None, copies: float | None = None):
    """Dispatch and combine of every MoE layer, each an all-to-all of local tokens x top_k x d x b_a bytes per GPU:
    with a measured NCCL curve 2 n_moe (t0 + (ep - 1) / ep * bytes / bus bandwidth); else 2 n_moe x (ep - 1) / ep
    x bytes one way over the link (half its bidirectional figure: alltoall_link_bandwidth, which past the scale-up
    domain gives the (ep - 1) / ep the time of the share for other nodes over the NIC), latency not modelled.
    copies: what each token is sent as in place of top_k: ep for an all-gather of every token to every GPU and a
    reduce-scatter back (vLLM's default: engines/links.dispatch_copies), under the same bus-bandwidth convention."""
    if ep == 1:
        return 0.0
    if curve is not None:
        message = local_tokens * (copies or model.moe.top_k) * model.hidden_size * b_a
        measured = alltoall_curve_seconds(curve, message, ep)
        if link_bandwidth_Bps:  # never below the bare transfer over the spec's own link (its speed of light)
            measured = maximum(measured, message * (ep - 1) / ep / (link_bandwidth_Bps / 2))
        return 2 * model.moe_layers * measured
    if not link_bandwidth_Bps:
        raise KvcalcError("--gpu: expert parallelism needs the spec's interconnect_bandwidth_GBps, which it does not list")
    moe = model.moe
    per_layer = local_tokens * (copies or moe.top_k) * model.hidden_size * b_a * (ep - 1) / ep
    return 2 * model.moe_layers * per_layer / (link_bandwidth_Bps / 2)


def expert_parallel_comm_seconds(model: ModelSpec, allreduce_s, local_tokens, b_a: float, ep: int,
                                 link_bandwidth_Bps: float | None, curve: AllReduceCurve | None = None, tp: int = 1,
                                 copies: float | None = None):
    """A step's communication when the experts span more GPUs than the tensor-parallel group: the attention's
    all-reduce (half of a layer's two) stays within the group, the MoE's becomes a dispatch and a combine. A
    replica of tp > 1 GPUs splits its tokens over them before the dispatch (vLLM's ParallelConfig.
    use_sequence_parallel_moe, on with expert parallelism, tp > 1 and data parallelism: "replicated tokens results in
    useless duplicate computation and communication"), so each GPU sends local_tokens / tp (the twentieth audit, N3:
    each had sent the whole replica's, tp times the bytes)."""
    return allreduce_s / 2 + alltoall_seconds(model, local_tokens / tp, b_a, ep, link_bandwidth_Bps, curve, copies)


def pipeline_fill_fraction(microbatches, pp: int):
    """The prefill's pipeline fill as a fraction of one micro-batch's full depth: (m - 1) / pp."""
    return (microbatches - 1) / pp
