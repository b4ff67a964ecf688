"""Simulated plant: device physics, Modbus TCP and MQTT servers, exact ground truth.

Modules, one job each:

* :mod:`.noise` seeded smooth noise; :mod:`.solar` sun position, clear-sky PV, clouds;
  :mod:`.loads` shift patterns and ramps; :mod:`.battery` SoC and dispatch;
* :mod:`.plant` the plant that ties them into one energy balance;
* :mod:`.ground_truth` exact energy per UTC hour, and the faults of each hour;
* :mod:`.faults` fault injection (resets, new meters, rollovers, gaps, late and
  duplicate messages, backward steps), scheduled in simulated time;
* :mod:`.register_bank` profile-driven register images; :mod:`.modbus_server` the
  Modbus TCP server; :mod:`.mqtt_publisher` the MQTT devices;
* :mod:`.runner` :class:`~.runner.PlantSimulator`, which serves it all on a clock.
"""
