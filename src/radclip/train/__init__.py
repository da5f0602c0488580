"""radclip.train"""
