"""serve --request-rate's closed form is the fluid steady state (requests evenly spaced), and says so: under Poisson
arrivals near capacity the simulator's requests queue and wait longer (the fresh audit: disaggregated Llama-3.1-70B at
83 % of its prefill pool's capacity, median TTFT 1.0 s simulated against 450 ms in the closed form)."""

import warnings

from kvcalc import serve
from kvcalc.serving.simulate import simulate


def test_the_rate_closed_form_names_its_arrivals_and_poisson_queues_past_it():
    kw = dict(input_len=4000, output_len=300, tp=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # near each layout's capacity: 1.96 requests/s colocated (serve -n max), 2.33 through the 2:2 prefill pool
        for rate, layout in ((1.7, {}), (2.0, {"disaggregate": (2, 2)})):
            closed = serve("llama-3.1-70b", "h200", request_rate=rate, **kw, **layout)
            assert "evenly spaced" in closed["assumptions"]["arrivals"] and "--simulate" in closed["assumptions"]["arrivals"]
            assert closed["replicas"] == 1  # one replica keeps up, near its capacity
            sim = simulate("llama-3.1-70b", "h200", request_rate=rate, num_prompts=1500, arrivals="poisson", **kw,
                           **layout)
            assert sim["ttft_ms"]["mean"] > 1.5 * closed["ttft_ms"]
        # under a concurrency the --arrivals mode, no longer null (the fortieth audit, outputs 6)
        assert serve("llama-3.1-70b", "h200", concurrency=8, **kw)["assumptions"]["arrivals"].startswith("staggered: ")
