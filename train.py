"""Train, validate, test or predict: `python train.py fit --config configs/quick.yaml`."""

from seq2seq.lightning_cli import main

if __name__ == "__main__":
    main()
