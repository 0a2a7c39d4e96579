"""The soak: the whole suite (the ingester's simulator included) at a steady rate for an hour
or as long as asked, sampled once a minute, and judged flat or not (verdict.py).

    make soak                     # 60 minutes at 1,000 ticks/s
    make soak SOAK_MINUTES=10     # shorter
    python -m bench.soak --minutes 60 --rate 1000 --instruments 50

What a leak, a slow accumulation or a creeping backlog looks like over an hour is what a
benchmark of a minute cannot show: each sample holds every process's resident memory, open
file descriptors and CPU, the consumer lag of every group, and the end-to-end latency a live
WebSocket client measured over that minute (ingest stamp to receipt). Written as it goes to
results/soak/<time>/samples.jsonl, then a plot (soak.png) and report.md with the verdict.
"""
