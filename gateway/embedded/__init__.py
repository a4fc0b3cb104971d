"""Throwaway Mosquitto and PostgreSQL servers on loopback, for the tests, the demo and the benchmarks."""
