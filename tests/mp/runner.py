# MicroPython side of the firmware test tier: run one test function of one
# module under the real `micropython` binary and report PASS/FAIL.
import sys

mod_name, fn_name = sys.argv[1], sys.argv[2]
mod = __import__(mod_name)
try:
    getattr(mod, fn_name)()
except Exception as e:  # report, with traceback, to the pytest side
    print("FAIL", fn_name)
    sys.print_exception(e)
    sys.exit(1)
print("PASS", fn_name)
