"""The latent explorer: a local web page where you drag one latent number, or a SeFa / GANSpace direction, and watch
the run's generator answer, with what the latent study measured for that move beside the slider.

    python analysis/explore.py --run-id RUN_ID                   # prints http://127.0.0.1:PORT/; Ctrl-C stops it
    python analysis/explore.py --run-id RUN_ID --z-file z.npy    # your own latent batch [N, 100] beside the seeds
    python analysis/explore.py --run-id RUN_ID --port 8050 --host 0.0.0.0   # reachable from other machines
    python analysis/explore.py --run-id RUN_ID --benchmark 50    # time 50 slider moves against the real server

The page binds loopback only unless --host says otherwise. Its "save" logs the latent batch, the sliders and the
images as a run tagged ganlab.kind=exploration and ganlab.source_run_id, in the source run's experiment.
"""

import ipaddress
import sys
import time

import torch

from ganlab import explorer, explorer_server
from ganlab.cli import ArgumentParser, add_common_flags, add_config_arguments, explicit_fields, run_script, script_parser
from ganlab.devices import resolve_device
from ganlab.errors import GanlabError


def build_parser() -> ArgumentParser:
    parser = script_parser(__doc__)
    parser.add_argument("--run-id", required=True, help="the training run whose generator to explore")
    add_config_arguments(parser, explorer.ExplorerConfig)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine "
                                                            "only)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: 0, a free one)")
    add_common_flags(parser, device=True)
    parser.add_argument("--benchmark", type=int, metavar="MOVES", help="time this many slider moves against the "
                                                                        "server, print the medians and exit")
    return parser


def main() -> int:
    arguments = build_parser().parse_args()
    config = explorer.ExplorerConfig(**explicit_fields(arguments, explorer.ExplorerConfig))
    if arguments.benchmark is not None and arguments.benchmark < 1:
        raise GanlabError(f"--benchmark needs at least 1 move, got {arguments.benchmark}")

    device = resolve_device(arguments.device)
    source = explorer.load_source(run_id=arguments.run_id, tracking_uri=arguments.tracking_uri, device=device)
    session = explorer.Explorer(source, config, device)
    try:
        with explorer_server.serving(explorer_server.create_app(session), arguments.host, arguments.port) as server:
            url = explorer_server.server_url(server)
            if arguments.benchmark:
                if not session.directions_ready.is_set():
                    print("waiting for the GANSpace directions: nothing else may compute while moves are timed",
                          file=sys.stderr)
                    session.directions_ready.wait()
                timing = explorer_server.measure_latency(session, url, arguments.benchmark, session.start_dims[0])
                print(f"one slider move ({source.arch}, {timing['samples']} images, {device}, "
                      f"{torch.get_num_threads()} threads): median {timing['move_ms']:.1f} ms over "
                      f"{timing['moves']} moves (90th percentile {timing['move_ms_p90']:.1f} ms); G's forward "
                      f"inside it: median {timing['forward_ms']:.1f} ms")
                return 0
            print(f"latent explorer of run {source.run_id} ({source.arch}) at {url}  (Ctrl-C stops it)\n"
                  f"  {session.study_line}"
                  + "".join(f"\n  {family} directions: {note}" for family, note in session.direction_notes.items()))
            if not _is_loopback(arguments.host):
                print(f"  listening on {arguments.host}: anyone who reaches this machine can use the page")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("explorer stopped")
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


if __name__ == "__main__":
    run_script(main)
