//! Kill -9 while encrypting: no (epoch, sender, generation) is ever used twice.
