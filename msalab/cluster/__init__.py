"""The course cluster: kind for learners, or an offline single-node cluster built from
package registries where no container image can be pulled (python -m msalab cluster ...)."""
