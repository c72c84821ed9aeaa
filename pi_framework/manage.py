"""``python -m pi_framework.manage <command>``: the operators' entry point, same commands as ``pi``."""

from pi_framework.cli import main

if __name__ == "__main__":
    main()
