"""`acceltune doctor`: what the machine has and what a run would use."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="device a run would ask for: auto, cpu, cuda, cuda:N")
    parser.add_argument("--precision", default="auto", help="precision a run would ask for: auto, fp32, fp16, bf16")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from acceltune.hardware import machine_report

    report = machine_report(args.device, args.precision)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="acceltune doctor", show_header=False)
    cpu = report["cpu"]
    table.add_row("platform", f"{report['platform']} · Python {report['python']}")
    table.add_row("CPU", f"{cpu['model']} · {cpu['cores']} usable cores · torch threads {cpu['torch_threads']}")
    table.add_row("CPU features", " ".join(f"{k}:{'yes' if v else 'no'}" for k, v in cpu["features"].items()))
    cuda = report["cuda"]
    if cuda["devices"]:
        for d in cuda["devices"]:
            table.add_row(f"cuda:{d['index']}", f"{d['name']} · compute capability {d['compute_capability']} · {d['memory_gib']} GiB · bf16 {'yes' if d['bf16'] else 'no'}")
    else:
        table.add_row("CUDA", f"no GPU visible (torch CUDA build: {cuda['torch_cuda'] or 'no'})")
    table.add_row("libraries", " · ".join(f"{k} {v}" for k, v in report["libraries"].items() if v))
    if report["extras"]:
        missing = [k for k, v in report["extras"].items() if not v]
        fix = escape(f" (pip install 'acceltune[{','.join(missing)}]')") if missing else ""  # [..] is not rich markup
        table.add_row("extras", " · ".join(f"{k} {'yes' if v else 'no'}" for k, v in report["extras"].items()) + fix)
    use = report["run_would_use"]
    table.add_row("a run would use", f"device {use['device']} · precision {use['precision']} · loss scaling {'on' if use['loss_scaling'] else 'off'} · TF32 {'on' if use['tf32'] else 'off'}")
    Console().print(table)
    return 0
