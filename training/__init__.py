"""Training of RNN/LSTM/GRU row generators on Fashion-MNIST or MNIST."""
