/* checkpoint.c: being written. */
