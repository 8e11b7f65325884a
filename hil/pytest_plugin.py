"""pytest plugin: --dut/--port/--heap options and the rig/DUT fixtures."""
