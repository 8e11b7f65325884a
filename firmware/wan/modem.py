# The WAN modem driver interface. The rest of the firmware (head-end link,
# clock, commissioning) talks to a Modem only; a driver per modem family
# (sim7600 today, a Quectel BG95 later) implements it over an AT channel.
from micropython import const

from log import KindException

# registration states (3GPP <stat>)
REG_NONE = const(0)
REG_HOME = const(1)
REG_SEARCHING = const(2)
REG_DENIED = const(3)
REG_UNKNOWN = const(4)
REG_ROAMING = const(5)

# event kinds passed to the listener: fn(kind, value)
EV_REG = "reg"  # value: combined registration stat
EV_SOCKET_CLOSED = "closed"  # value: reason (0 local, 1 remote, 2 timeout, -1 network lost)
EV_NET_LOST = "net_lost"  # the PDP/network library dropped; re-attach needed
EV_TIME = "time"  # network time arrived; read it with network_time()
EV_BOOT = "boot"  # the modem (re)booted on its own: run init() again
EV_SIM = "sim"  # value: SIM state text (b"READY", b"SIM PIN", ...)


class ModemError(KindException):
    """A modem failure, raised as ModemError(kind[, message[, err]]); the
    kinds (the classes of before): NoSim, PinRequired (the SIM wants a PIN
    and none, or no further attempt, is allowed), WrongPin, PukRequired,
    RegistrationDenied, AttachFailed (PDP context / network library
    activation failed), SocketOpenFailed (args[2]: the modem's <err>),
    SocketClosed, ModemSilent (no answer to AT: escalate to a hardware
    reset), or ModemError itself; and Planned (args[1]: the reason), the
    session's planned end (wan.session), not the modem's failure."""


def registered(stat):
    return stat == REG_HOME or stat == REG_ROAMING


class Modem:
    """The driver interface: the state every driver keeps, and below the
    methods each implements."""

    def __init__(self):
        self.listener = None  # fn(kind, value)
        self.reg_stat = REG_UNKNOWN
        self.socket_open = False

    def _emit(self, kind, value=None):
        if self.listener is not None:
            self.listener(kind, value)

    # The interface a driver implements (Sim7600 does; a coroutine unless
    # noted). Not written as methods here: each would be a function object
    # and a class slot in RAM for the hub's life, never called.
    # The running link's part, methods of the driver:
    #   signal_dbm(): Signal strength in dBm, None when unknown.
    #   signal_avg_dbm(): (not a coroutine) Rolling average of recent signal_dbm() samples.
    #   send(data)
    #   recv(timeout_ms=None): Next received bytes (b"" on timeout or wake()); raises SocketClosed.
    #   wake(): (not a coroutine) End a waiting recv() now with b"" (something was queued to send).
    #   poll_rx(): Ask the modem whether received data waits (the safety net for a "data waiting"
    #     notice lost on the line) -> True when some does; the next recv() then reads it.
    #   set_timings(timings): (not a coroutine) {name: ms} overrides of the driver's command
    #     timeouts; ValueError for an unknown name, before any is changed.
    #   close_socket()
    # The bring-up, functions f(m, ...) of the module the driver's class
    # attribute UP names (wan.sim7600_up), which the session loads while the
    # link is down and drops once it is up:
    #   init(m): Bring the UART dialogue up (echo off, error mode, URCs on); -> the modem's revision (logged).
    #   alive(m): AT answered (False: escalate to hw_reset).
    #   sim_ready(m, pin=None): True when the SIM is usable; enters pin once; raises
    #     NoSim/WrongPin/PukRequired.
    #   registration(m): Current registration stat (REG_*).
    #   wait_registered(m, timeout_ms): Registration polled until registered or the timeout.
    #   cell_id(m): (rat, "mcc-mnc", area code, cell id) of the serving cell, or None.
    #   set_radio_mode(m, mode)
    #   attach(m, apn): Activate data; returns the IP address text (not kept). Raises AttachFailed.
    #   detach(m)
    #   open_socket(m, host, port); tls_prepare(m, cred), open_tls(m, host, port): the TCP
    #     channel, or the TLS one with the link credentials (wan.linkcred)
    #   network_time(m): UTC seconds since 1970 from the modem clock, None when not set.
    #   hw_reset(m): Pulse the modem's reset line (board hook) and wait for it to boot.
