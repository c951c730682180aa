"""`python -m bench`: see bench.settings for the environment variables."""

from bench.codec.run import main

if __name__ == "__main__":
    main()
