# The emulated board's rig hooks (rig.hooks): only images for a board whose
# config says "rig": true (boards/unix) carry this package.
