"""`python -m bench`: see bench.settings for the environment variables."""

from .run import main

if __name__ == "__main__":
    main()
