"""A weight transfer over torch.distributed's gloo (TCP) for vLLM's native weight-sync API.

vLLM's own transports (NCCL, CUDA IPC) need GPUs. This pair runs the same lifecycle
(``/init_weight_transfer_engine`` once, then ``/start_weight_update``,
``/update_weights``, ``/finish_weight_update`` per sync) over gloo, so it works between
CPU processes on one machine or across hosts, and beside GPU engines too (tensors travel
through host memory).

- `GlooWeightTransferEngine` is the inference-worker side, registered in vLLM's
  ``WeightTransferEngineFactory`` as `GLOO_BACKEND` by our ``vllm.general_plugins`` entry
  point (`vllm_adapter.register_weight_transfer_engines`), so a server started with
  ``--weight-transfer-config '{"backend": "coordexp_gloo"}'`` builds it.
- `GlooTrainerWeightTransferEngine` is the trainer side, registered in
  ``WeightTransferTrainerFactory`` under the same name by the same function, at runtime.

Rendezvous: the trainer is rank 0 (the sender) and hosts a ``TCPStore`` on
``master_port``; the server's workers connect to ``master_address:master_port`` as ranks
``rank_offset``.. (one group per server). Every collective is bounded by ``timeout_s``, so
a peer that dies makes the other side fail instead of hanging.

Importing this module imports vLLM: only vLLM processes (through the factories) and the
trainer's native sync load it.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Self, TypeVar

import torch
import torch.distributed as dist
from vllm.distributed.weight_transfer.base import (
    TrainerInitInfo,
    TrainerWeightTransferEngine,
    VLLMWeightSyncClient,
    WeightSource,
    WeightTransferEngine,
    WeightTransferInitInfo,
    WeightTransferUpdateInfo,
)

from coordexp_backends.vllm_adapter import TRANSFER_BACKENDS

T = TypeVar("T")

GLOO_BACKEND = TRANSFER_BACKENDS["gloo"]
"""The name both vLLM factories know this transport by (``--weight-transfer-config``)."""


@dataclass
class GlooInitInfo(WeightTransferInitInfo):  # type: ignore[misc]
    """Worker-side rendezvous: where the trainer's store listens, ranks and the bound.

    Attributes:
        master_address: host the workers reach the trainer's ``TCPStore`` at.
        master_port: its port (the server's ``group_port``).
        rank_offset: rank of the server's first worker (1: the trainer is rank 0).
        world_size: trainer + the server's workers.
        timeout_s: bound on the rendezvous and on every broadcast.
    """

    master_address: str
    master_port: int
    rank_offset: int
    world_size: int
    timeout_s: float


@dataclass
class GlooUpdateInfo(WeightTransferUpdateInfo):  # type: ignore[misc]
    """One sync's tensors, in broadcast order: checkpoint names, dtype names, shapes."""

    names: list[str]
    dtype_names: list[str]
    shapes: list[list[int]]

    def __post_init__(self) -> None:
        if not len(self.names) == len(self.dtype_names) == len(self.shapes):
            raise ValueError(
                f"gloo update info lists {len(self.names)} names, {len(self.dtype_names)} "
                f"dtypes and {len(self.shapes)} shapes; they must have one entry per tensor"
            )


@dataclass
class GlooTrainerInitInfo(TrainerInitInfo):  # type: ignore[misc]
    """Trainer-side rendezvous of one server's group (``rank``: this trainer's rank).

    Attributes:
        master_address: this trainer's address as the server's workers reach it.
        master_port: the port the trainer's store listens on (the server's ``group_port``).
        world_size: 1 + the server's worker count (its ``/get_world_size``).
        timeout_s: bound on the rendezvous and on every broadcast.
    """

    backend: ClassVar[str] = GLOO_BACKEND

    master_address: str
    master_port: int
    world_size: int
    timeout_s: float


def _group(address: str, port: int, rank: int, size: int, timeout_s: float) -> Any:
    """A standalone gloo process group (not torch.distributed's default group).

    Rank 0 hosts the ``TCPStore``; the others connect to it. Blocks until every rank has
    joined or ``timeout_s`` passes.
    """
    timeout = datetime.timedelta(seconds=timeout_s)
    store = dist.TCPStore(address, port, size, rank == 0, timeout=timeout)  # type: ignore[attr-defined]
    return dist.ProcessGroupGloo(store, rank, size, timeout)


def _in_background(fn: Callable[[], T]) -> Future[T]:
    """Run ``fn`` on a daemon thread: the caller never has to wait for a peer that died."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to whoever reads the future
            future.set_exception(exc)

    threading.Thread(target=run, name="coordexp-gloo", daemon=True).start()
    return future


def _broadcast(group: Any, tensor: torch.Tensor) -> None:
    """Broadcast ``tensor`` (CPU, contiguous) from rank 0 of ``group``, in place."""
    options = dist.BroadcastOptions()
    options.rootRank = 0
    group.broadcast([tensor], options).wait()


class GlooWeightTransferEngine(WeightTransferEngine[GlooInitInfo, GlooUpdateInfo]):  # type: ignore[misc]
    """Inference-worker side: receive checkpoint-format tensors and load them layer by layer.

    Each tensor is received into host memory, moved to the worker's device and handed to
    the model's ``load_weights`` (which maps checkpoint names and shards for tensor
    parallelism) inside vLLM's layerwise reload, as vLLM's own NCCL engine does.
    """

    init_info_cls = GlooInitInfo
    update_info_cls = GlooUpdateInfo

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group: Any = None

    def init_transfer_engine(self, init_info: GlooInitInfo) -> None:
        """Join the trainer's group (replacing an earlier one, e.g. after a failed sync)."""
        self.shutdown()
        parallel = self.parallel_config
        worker = parallel.data_parallel_index * parallel.world_size + parallel.rank
        self.group = _group(
            init_info.master_address,
            init_info.master_port,
            worker + init_info.rank_offset,
            init_info.world_size,
            init_info.timeout_s,
        )

    def start_weight_update(self) -> None:
        """Begin vLLM's layerwise reload (checkpoint-format weights follow)."""
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        initialize_layerwise_reload(self.model)

    def update_weights(self, update_info: dict[str, Any]) -> None:
        """Receive and load one update (the base class's device sync needs an accelerator)."""
        self.receive_weights(self.parse_update_info(update_info))
        if torch.accelerator.is_available():
            torch.accelerator.synchronize()

    def receive_weights(self, update_info: GlooUpdateInfo) -> None:
        """Receive every tensor ``update_info`` lists, in order, and load each one.

        Raises:
            RuntimeError: the engine has no group yet (``init_transfer_engine`` first).
        """
        if self.group is None:
            raise RuntimeError(
                "gloo weight transfer is not initialised: call /init_weight_transfer_engine "
                "before /update_weights"
            )
        for name, dtype_name, shape in zip(
            update_info.names, update_info.dtype_names, update_info.shapes, strict=True
        ):
            tensor = torch.empty(shape, dtype=getattr(torch, dtype_name))
            _broadcast(self.group, tensor)
            self.model.load_weights([(name, tensor.to(self.device))])

    def finish_weight_update(self) -> None:
        """Finish vLLM's layerwise reload (processes and places the loaded layers)."""
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        finalize_layerwise_reload(self.model, self.model_config)

    def shutdown(self) -> None:
        """Leave the group (the trainer's side then fails fast instead of waiting)."""
        if self.group is not None:
            self.group.abort()
            self.group = None


class GlooTrainerWeightTransferEngine(TrainerWeightTransferEngine[GlooTrainerInitInfo]):  # type: ignore[misc]
    """Trainer side: host one server's group and broadcast the source's tensors to it.

    ``send_weights`` drives ``start_weight_update``, then ``update_weights`` (the workers
    receive, on a side thread) while this rank broadcasts, then ``finish_weight_update``,
    all through the client. Only rank 0 sends; other trainer ranks only iterate the
    source (its materialisation may be a collective among them).
    """

    init_info_cls = GlooTrainerInitInfo

    def __init__(
        self,
        *,
        client: VLLMWeightSyncClient,
        source: WeightSource | None = None,
        is_sender: bool = True,
    ) -> None:
        super().__init__(client=client, source=source, is_sender=is_sender)
        self.group: Any = None

    @classmethod
    def trainer_init(
        cls,
        init_info: GlooTrainerInitInfo,
        *,
        client: VLLMWeightSyncClient,
        source: WeightSource | None = None,
    ) -> Self:
        """Open the group: the server's workers join through ``client`` while we host it.

        Raises:
            ValueError: no ``source`` (this backend resends full weights every round).
        """
        if source is None:
            raise ValueError("the gloo weight transfer needs a WeightSource to send")
        engine = cls(client=client, source=source, is_sender=init_info.is_sender)
        if not engine.is_sender:
            return engine
        worker_info = GlooInitInfo(
            master_address=init_info.master_address,
            master_port=init_info.master_port,
            rank_offset=1,
            world_size=init_info.world_size,
            timeout_s=init_info.timeout_s,
        )
        # The workers answer init once every rank joined, so the group is hosted meanwhile
        # on a side thread; a server that refuses init fails here at once instead of after
        # the rendezvous timeout (the side thread then gives up on its own).
        hosted = _in_background(
            lambda: _group(
                init_info.master_address,
                init_info.master_port,
                0,
                init_info.world_size,
                init_info.timeout_s,
            )
        )
        client.init_weight_transfer_engine(asdict(worker_info))
        engine.group = hosted.result(timeout=init_info.timeout_s)
        return engine

    def send_weights(self) -> None:
        """Send every tensor of the source through one full update round trip."""
        assert self.source is not None
        if not self.is_sender:
            for _ in self.source:
                pass
            return
        meta = self.source.metadata()
        info = GlooUpdateInfo(
            names=[m.name for m in meta],
            dtype_names=[str(m.dtype).removeprefix("torch.") for m in meta],
            shapes=[list(m.shape) for m in meta],
        )
        self.client.start_weight_update()
        # The workers receive inside /update_weights while this rank broadcasts. After a
        # failed broadcast that request ends when the group is shut down or times out:
        # it is never waited for here.
        received = _in_background(lambda: self.client.update_weights(asdict(info)))
        for tensor in self._tensors(info):
            _broadcast(self.group, tensor)
        received.result()
        self.client.finish_weight_update()

    def _tensors(self, info: GlooUpdateInfo) -> Iterator[torch.Tensor]:
        """The source's tensors as contiguous host copies, checked against ``info``.

        Raises:
            ValueError: the source yields other tensors than the ones announced.
        """
        assert self.source is not None
        sent = 0
        for name, tensor in self.source:
            expected = info.names[sent] if sent < len(info.names) else "nothing more"
            if name != expected:
                raise ValueError(
                    f"weight source yielded {name!r} at position {sent}, announced {expected!r}"
                )
            sent += 1
            yield tensor.detach().to("cpu").contiguous()
        if sent != len(info.names):
            raise ValueError(f"weight source yielded {sent} tensors, announced {len(info.names)}")

    def shutdown(self) -> None:
        """Abort the group: workers blocked in a broadcast fail instead of waiting."""
        if self.group is not None:
            self.group.abort()
            self.group = None
