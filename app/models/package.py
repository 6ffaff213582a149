"""Packages hold artifacts: a candidate's files or a version's release."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Identifier, UTCDateTime, utcnow
from app.models.enums import PackageStatus, PackageType, string_enum


class Package(Base):
    __tablename__ = "packages"
    __table_args__ = (sa.UniqueConstraint("project_id", "package_type", "name", "version"),)

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    package_type: Mapped[PackageType] = mapped_column(string_enum(PackageType))
    name: Mapped[str] = mapped_column(sa.String(255))
    version: Mapped[str] = mapped_column(sa.String(255))
    status: Mapped[PackageStatus] = mapped_column(
        string_enum(PackageStatus), default=PackageStatus.DEFAULT
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class PackageFile(Base):
    __tablename__ = "package_files"
    __table_args__ = (sa.UniqueConstraint("package_id", "path"),)

    id: Mapped[int] = mapped_column(Identifier, primary_key=True)
    package_id: Mapped[int] = mapped_column(sa.ForeignKey("packages.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(sa.String(1024))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str | None] = mapped_column(sa.String(64))
    # Where the bytes live in the artifact store; never changes when the package does.
    storage_key: Mapped[str] = mapped_column(sa.String(1024), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
