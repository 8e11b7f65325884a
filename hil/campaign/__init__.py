"""Proof campaigns over the full HIL scenario: power cuts at flash block
writes (`power_cut`), injected faults over an emulated day (`faults`). See
docs/proof.md."""
