"""`python -m genapps ...`, which torchrun runs as `torchrun --nproc_per_node N -m genapps ...`."""

from genapps.cli import main

if __name__ == "__main__":
    main(prog_name="genapps")
