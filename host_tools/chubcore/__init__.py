"""chubcore: what the `chub` CLI and the `hil` rig both stand on.

The local-port client (`localport`), the laptop's provisioning records
(`records`), the wire shapes of local-port answers (`device_log`), the test
DCC's remote parties (`dcc`), where the repository's parts are (`paths`), the
image build (`build`) and putting a built image on a board's file system
(`image_copy`). Nothing here imports the rest of `chub` or `hil`.
"""
