"""How the runtime's snapshots read as dynos (a pure mapping)."""

from __future__ import annotations

from agent.runtime import Instance, ProcessStatus
from control.agent_target import dynos_of
from control.releasing import DynoState


def states(status: ProcessStatus, quantity: int = 1) -> list[tuple[str, DynoState, str]]:
    return [(d.name, d.state, d.reason) for d in dynos_of(status, quantity=quantity, release=7)]


class TestDynoStates:
    def test_a_ready_instance_is_up_and_a_booting_one_is_waking(self) -> None:
        status = ProcessStatus(
            app="a",
            process="web",
            desired=2,
            instances=(
                Instance(name="web.1", host="127.0.0.1", port=5000, ready=True),
                Instance(name="web.2", host="127.0.0.1", port=5001, ready=False),
            ),
        )
        assert states(status, 2) == [
            ("web.1", DynoState.UP, ""),
            ("web.2", DynoState.WAKING, ""),
        ]

    def test_a_crashed_instance_says_why(self) -> None:
        status = ProcessStatus(
            app="a",
            process="web",
            desired=1,
            instances=(
                Instance(
                    name="web.1", host=None, port=None, ready=False, crashed=True,
                    reason="exited with code 1",
                ),
            ),
        )  # fmt: skip
        assert states(status) == [("web.1", DynoState.CRASHED, "exited with code 1")]

    def test_a_wanted_type_with_no_replica_is_asleep(self) -> None:
        status = ProcessStatus(app="a", process="web", desired=0)
        assert states(status, quantity=1) == [("web", DynoState.ASLEEP, "")]

    def test_a_type_scaled_to_zero_by_its_owner_shows_nothing(self) -> None:
        status = ProcessStatus(app="a", process="worker", desired=0)
        assert states(status, quantity=0) == []
