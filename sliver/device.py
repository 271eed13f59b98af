"""A latency worker for another device, and the client the search machine uses to reach it.

On the device (a board, a laptop, a server with the deployment runtime) run::

    python -m sliver.device serve --host 0.0.0.0 --port 8780     # or: sliver device serve ...

and on the search machine name it in the hardware target:
``cpu-ort-b1@DEVICE:8780`` (or ``remote: http://DEVICE:8780`` in a target
YAML). The search machine exports each sub-network to ONNX and sends only that
export, one input batch and the target's settings; the worker times it with
the target's protocol (:func:`sliver.measure.timing.time_onnx`: ONNX Runtime
with an execution provider, or OpenVINO) and answers with the statistics and
its own fingerprint. The worker needs neither torch nor the super-network:
this module and everything it imports stay free of torch.

The worker is a small HTTP server (the standard library's): the search
machine connects to it, no code is pickled across machines, and the two need
only the same sliver version. It handles one request at a time, so a
measurement never shares the device with another one, or with the receiving
of the next model. It runs whatever ONNX model it is sent: listen on a
trusted network only.

Endpoints (POST): ``/fingerprint`` (JSON ``{"target": fields}``) answers the
fingerprint of that target on this machine; ``/measure`` (an ``.npz`` with
``onnx``, ``input`` and ``request``) answers ``{"latency": ...}``. A request
that names a study's fingerprint other than the worker's is refused (409):
latencies of different fingerprints never mix.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np

from sliver import __version__
from sliver.config import validate
from sliver.errors import UserError, one_line
from sliver.measure.hardware import HardwareTarget
from sliver.measure.timing import LatencyResult, time_onnx

#: not 8787, which is the Dask dashboard's default
DEFAULT_PORT = 8780
#: seconds the client waits for one answer: the worker measures one model at a time, so a request may queue
TIMEOUT_S = 600.0


# ---------------------------------------------------------------- the worker
def _local_target(fields: dict) -> HardwareTarget:
    """The requested target as one this machine runs (the ``remote`` field is the client's business)."""
    fields = {k: v for k, v in fields.items() if k != "remote"}
    return validate(HardwareTarget, fields, "target sent to the worker")


class _Refused(Exception):
    """A request the worker does not run, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    server_version = f"sliver-device/{__version__}"

    def do_POST(self) -> None:  # noqa: N802 (the http.server name)
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/fingerprint":
                target = _local_target(json.loads(body)["target"])
                answer = {"fingerprint": target.fingerprint(), "hash": target.fingerprint_hash()}
            elif self.path == "/measure":
                answer = {"latency": self._measure(body).to_dict()}
            else:
                raise _Refused(404, f"no endpoint {self.path}; this worker answers /fingerprint and /measure")
        except _Refused as exc:
            return self._answer(exc.status, {"error": str(exc)})
        except UserError as exc:  # the target cannot run here (runtime, provider) or its fields are wrong
            return self._answer(400, {"error": str(exc)})
        except Exception as exc:  # the model failed to load or run: the client records the measurement as failed
            return self._answer(500, {"error": f"{type(exc).__name__}: {one_line(exc)}"})
        self._answer(200, answer)

    def _measure(self, body: bytes) -> LatencyResult:
        with np.load(io.BytesIO(body), allow_pickle=False) as parts:
            request = json.loads(str(parts["request"]))
            onnx_model, inputs = parts["onnx"].tobytes(), parts["input"]
        target = _local_target(request["target"])
        mine, wanted = target.fingerprint_hash(), request.get("fingerprint")
        if wanted and wanted != mine:
            raise _Refused(409, f"this worker's fingerprint is {mine}, not the study's {wanted}: latencies of different "
                                "machines or runtimes never mix; measure the study on the device it began on, or start a new study")
        result = time_onnx(onnx_model, inputs, target)
        result.fingerprint = mine
        print(f"{time.strftime('%H:%M:%S')} {target.name}: {len(onnx_model) / 1024:,.0f} KiB model, input {list(inputs.shape)}, "
              f"median {result.median_ms:.3f} ms over {result.n_runs} runs", flush=True)
        return result

    def _answer(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass  # one line per measurement (above) says more than the access log


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve latency measurements on ``host:port`` until interrupted (port 0: a free one, printed on start).

    Requests are handled one at a time: a measurement never shares the device.
    """
    # HTTPServer, not ThreadingHTTPServer: later requests wait in the listen queue instead of running alongside
    HTTPServer.request_queue_size = 64
    server = HTTPServer((host, port), _Handler)
    runtimes = _runtimes()
    print(f"sliver device worker on http://{host}:{server.server_address[1]} ({runtimes})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _runtimes() -> str:
    import importlib.metadata

    found = []
    for name in ("onnxruntime", "openvino"):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found) or "no ONNX runtime installed: pip install onnxruntime"


# ---------------------------------------------------------------- the client
def remote_fingerprint(target: HardwareTarget) -> dict:
    """The fingerprint of ``target`` on its remote worker (a one-line :class:`UserError` if it cannot run it)."""
    body = json.dumps({"target": target.model_dump(mode="json")}).encode()
    return _post(target, "/fingerprint", body, "application/json")["fingerprint"]


def remote_latency(onnx_model: bytes, inputs: np.ndarray, target: HardwareTarget,
                   fingerprint: str | None = None) -> LatencyResult:
    """Latency of one batch ``inputs`` through ``onnx_model``, timed by ``target``'s remote worker.

    The worker refuses (a one-line :class:`UserError`) when ``fingerprint`` is
    given and its own is another; the result carries the worker's fingerprint hash.
    """
    request = json.dumps({"target": target.model_dump(mode="json"), "fingerprint": fingerprint})
    buf = io.BytesIO()
    # the batch itself travels, not just its shape: token ids must stay inside the vocabulary
    np.savez(buf, onnx=np.frombuffer(onnx_model, dtype=np.uint8), input=np.ascontiguousarray(inputs),
             request=np.array(request))
    return LatencyResult(**_post(target, "/measure", buf.getvalue(), "application/octet-stream")["latency"])


def _post(target: HardwareTarget, path: str, body: bytes, content_type: str) -> dict:
    url = f"{target.remote}{path}"
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]
        except (ValueError, KeyError):
            message = f"HTTP {exc.code} {exc.reason}; is {target.remote} a sliver device worker?"
        if exc.code in (400, 409):
            raise UserError(f"remote worker {target.remote}: {message}") from None
        raise RuntimeError(f"remote worker {target.remote}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(
            f"hardware target '{target.name}': no sliver device worker answers at {target.remote} ({reason}); "
            "start one on the device with 'sliver device serve --host 0.0.0.0 --port PORT' or fix the address"
        ) from None


# ---------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> None:
    """``python -m sliver.device serve [--host H] [--port P]``: the worker without sliver's full command line."""
    parser = argparse.ArgumentParser(prog="python -m sliver.device", description="sliver's latency worker for a device")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("serve", help="time the ONNX models a search sends, on this device")
    cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface; trusted networks only)")
    cmd.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT}; 0: a free one)")
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port)
    except (UserError, OSError) as exc:  # e.g. the port is taken
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
