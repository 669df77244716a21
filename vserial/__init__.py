"""The virtual serial port: the device side of the wire, on a pty, over TCP, or in process.

These transports are the only device code that does I/O. They move bytes
between a port and a :class:`firmware_sim.device.DeviceController`, which
decodes frames and drives the token.
"""
