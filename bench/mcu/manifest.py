# Frozen content of the qemu bench image (`chub bench --mcu`,
# host_tools/chub/bench_mcu.py, which passes FIRMWARE and BENCH in the
# environment): MicroPython's asyncio package (pure Python: the qemu port has
# no _asyncio), the whole firmware tree as the hub freezes it, the bench
# scripts that run on it and this folder's mcu_ops/mcu_os.
import os

package("asyncio", base_path="$(MPY_DIR)/extmod")  # noqa: F821
freeze(os.environ["CHUB_MCU_FIRMWARE"])  # noqa: F821
freeze(os.environ["CHUB_MCU_BENCH"], ("mp_crypto.py", "mp_gbcs.py", "mp_han.py"))  # noqa: F821
freeze(os.environ["CHUB_MCU_BENCH"] + "/mcu", ("mcu_ops.py", "mcu_os.py"))  # noqa: F821
