"""edgeim's benchmarks. ``im bench`` (cli/bench.py) is the harness: scenarios in TOML
(``scenarios/``, read by ``scenario``), load from several processes (``loadgen``), results
as JMeter's JTL (``jtl``), the bare picows ceiling (``baseline_relay --route``) and the
Centrifugo peer (``peer``), orchestrated by ``runner``. The older single-purpose scripts
beside them (``python bench/memory.py`` ...) still run with bench/ on sys.path."""
