"""A running engine seen from outside its process: the control socket it serves in the
lab (protocol, server), the clients that drive it from another terminal or a script
(client, attached), and the log it writes while no terminal shows it (engine_log)."""
