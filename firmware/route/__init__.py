# Routing by recipient EUI-64 and the GSME command buffer (docs/routing.md).
