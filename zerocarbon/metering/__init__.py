"""Device knowledge: metric vocabulary, register maps (profiles) and register codecs."""
