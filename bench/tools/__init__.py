"""Commands on the top floor: kernel benchmark, head profiling, training, toy acceptance and
performance scripts. They compose everything below them; nothing below imports them."""
