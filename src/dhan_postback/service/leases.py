"""The leases one dispatcher holds, for its heartbeat: which to renew, which were lost.

Plain bookkeeping, no tasks and no clock, like :mod:`.lanes` (the dispatcher's docstring
tells the story these rules serve):

* **Held from claim to commit.** A lease is held from the moment its claim reaches the
  dispatcher (:meth:`Leases.hold`, however the claim was made) until the outcome or the
  give-back that ends it is committed; :meth:`Leases.let_go` forgets it just before that
  write (and :meth:`Leases.hold_again` takes it back if the write fails), so that a claim of
  the same delivery made right after the commit is not forgotten with it.
* **Named by its end.** A lease is ``(delivery id, lease end)``, the end as the store last
  handed it out; the heartbeat renews exactly those (:meth:`Leases.held`), and the store
  renews only the ones still as given (:meth:`~.store.base.Store.renew`).
* **Lost is final.** A lease the store refused to renew is another node's now (it ran out
  and was claimed, or a replay reset it): :meth:`Leases.renewed` forgets it and names it
  lost. The dispatcher drops what it holds of it without a word to the store; one it had
  already started stays marked (:meth:`Leases.lose`) until its worker sees the mark
  (:meth:`Leases.take_lost`), so that its outcome is not written either. A fresh claim of
  the same delivery (this node claimed it again) clears the mark: the lease is ours again.
* **Written under the lease held.** What :meth:`Leases.let_go` returns names the leases the
  outcomes and give-backs are written under (:class:`~.store.base.Held`): the store applies
  each only while its lease is still that one, so a node that stalled past its lease, and
  heard no refusal, cannot finish what another node now holds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from .store.base import Claim

__all__ = ["Leases"]


class Leases:
    """Lease ends by delivery id, and the deliveries started before their lease was lost."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lost: set[str] = set()

    def __len__(self) -> int:
        return len(self._until)

    def hold(self, claims: Iterable[Claim]) -> None:
        """Claims that reached the dispatcher: their leases are held (a newer claim of a
        delivery held already brings its newer lease end)."""
        for claim in claims:
            self._until[claim.id] = claim.lease_until
            self._lost.discard(claim.id)

    def until(self, claim: Claim) -> float:
        """When the lease of ``claim`` ends, as last renewed (its own end if not held)."""
        return self._until.get(claim.id, claim.lease_until)

    def held(self) -> list[tuple[str, float]]:
        """Every lease held, as ``(delivery id, lease end)``: what the next renewal asks for."""
        return list(self._until.items())

    def renewed(
        self, asked: Iterable[tuple[str, float]], renewed: Collection[str], until: float
    ) -> set[str]:
        """The store renewed ``renewed`` of the leases ``asked`` until ``until``: record the
        new ends, forget the rest and return their ids (lost). A lease that changed here
        while the store answered (let go, or held again by a newer claim) is left as it is."""
        lost: set[str] = set()
        for delivery_id, asked_until in asked:
            if self._until.get(delivery_id) != asked_until:
                continue
            if delivery_id in renewed:
                self._until[delivery_id] = until
            else:
                del self._until[delivery_id]
                lost.add(delivery_id)
        return lost

    def let_go(self, ids: Iterable[str]) -> list[tuple[str, float]]:
        """Stop holding these leases (their outcome or give-back is being written); return
        what was held, for :meth:`hold_again` should the write fail."""
        until = self._until
        return [
            (delivery_id, until.pop(delivery_id)) for delivery_id in ids if delivery_id in until
        ]

    def hold_again(self, let_go: Iterable[tuple[str, float]]) -> None:
        """The write failed: these leases are still ours (unless held anew meanwhile)."""
        for delivery_id, until in let_go:
            self._until.setdefault(delivery_id, until)

    def lose(self, ids: Iterable[str]) -> None:
        """Mark deliveries whose lease was lost while they were started (waiting for a
        worker, or under way): their worker must not write their outcome nor give them back."""
        self._lost.update(ids)

    def is_lost(self, delivery_id: str) -> bool:
        return delivery_id in self._lost

    def take_lost(self, delivery_id: str) -> bool:
        """Whether the delivery's lease was lost while it was started; clears the mark."""
        if delivery_id in self._lost:
            self._lost.remove(delivery_id)
            return True
        return False
