#!/usr/bin/env python3
"""SQLAlchemy 2 ORM over psycopg 3 with SQLAlchemy's own QueuePool: declarative models
with relationships, bulk inserts, 20 threads sharing a pool of 5 connections for their
sessions, queries with filters, joins and eager loading, rollbacks after errors, and
per-engine session settings (startup options and a connect hook) that stay with their
engine.

Usage: sqlalchemy_suite.py HOST PORT USER PASSWORD DBNAME (a fresh, empty database).
Prints one deterministic JSON document; see suite_common.py.
"""

import datetime as dt
import threading
from decimal import Decimal

from sqlalchemy import (
    URL,
    DateTime,
    ForeignKey,
    Numeric,
    String,
    UniqueConstraint,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload

from suite_common import DBNAME, FAILED, HOST, PASSWORD, PORT, USER, describe, finish, record, summarize


def engine(**kwargs):
    url = URL.create("postgresql+psycopg", username=USER, password=PASSWORD, host=HOST, port=PORT, database=DBNAME)
    connect_args = {"sslmode": "disable", **kwargs.pop("connect_args", {})}
    return create_engine(url, connect_args=connect_args, **kwargs)


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "sa_customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    region: Mapped[str] = mapped_column(String(20), index=True)
    orders: Mapped[list["Order"]] = relationship(back_populates="customer", cascade="all, delete-orphan")


class Product(Base):
    __tablename__ = "sa_products"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(20), unique=True)
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))


class Order(Base):
    __tablename__ = "sa_orders"
    __table_args__ = (UniqueConstraint("customer_id", "ref"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("sa_customers.id"))
    ref: Mapped[str] = mapped_column(String(40))
    placed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    customer: Mapped[Customer] = relationship(back_populates="orders")
    lines: Mapped[list["OrderLine"]] = relationship(back_populates="order", cascade="all, delete-orphan")


class OrderLine(Base):
    __tablename__ = "sa_order_lines"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("sa_orders.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("sa_products.id"))
    qty: Mapped[int]
    order: Mapped[Order] = relationship(back_populates="lines")
    product: Mapped[Product] = relationship()


REGIONS = ["north", "south", "east", "west"]
THREADS = 20
ORDERS_PER_THREAD = 15


def worker(eng, t, errors):
    try:
        for k in range(ORDERS_PER_THREAD):
            customer_id = (t * ORDERS_PER_THREAD + k) % 100 + 1
            with Session(eng) as session:
                customer = session.get(Customer, customer_id)
                order = Order(
                    ref=f"t{t}-k{k}",
                    placed_at=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=t * 100 + k),
                )
                for j in range(3):
                    sku = f"SKU-{(t * 7 + k * 3 + j) % 200:03d}"
                    product = session.scalars(select(Product).where(Product.sku == sku)).one()
                    order.lines.append(OrderLine(product=product, qty=j + 1 + (k % 4)))
                customer.orders.append(order)
                if k % 5 == 4:
                    # the same ref twice for one customer: the flush fails and the session rolls back
                    customer.orders.append(Order(ref=f"t{t}-k{k}", placed_at=order.placed_at))
                    try:
                        session.commit()
                        errors.append(f"thread {t} order {k}: duplicate accepted")
                    except IntegrityError as e:
                        if e.orig is None or e.orig.sqlstate != "23505":
                            errors.append(f"thread {t} order {k}: {describe(e.orig)}")
                        session.rollback()
                    continue
                session.commit()
                # read back in the same session, after the commit expired everything
                if len(order.lines) != 3 or order.customer.id != customer_id:
                    errors.append(f"thread {t} order {k}: read back wrong")
    except Exception as e:  # noqa: BLE001
        errors.append(f"thread {t}: {describe(e)}")


def orm_over_pool():
    out = {}
    eng = engine(pool_size=5, max_overflow=0, pool_timeout=120, pool_pre_ping=True)
    try:
        Base.metadata.create_all(eng)
        with Session(eng) as session:
            session.execute(
                insert(Product),
                [{"sku": f"SKU-{i:03d}", "price": Decimal(i % 50) + Decimal("0.99")} for i in range(200)],
            )
            session.add_all(Customer(id=i, name=f"customer {i}", region=REGIONS[i % 4]) for i in range(1, 101))
            session.commit()

        errors = []
        threads = [threading.Thread(target=worker, args=(eng, t, errors)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        out["thread errors"] = sorted(errors)
        if errors:
            FAILED.append("orm_over_pool")

        with Session(eng) as session:
            out["orders"] = session.scalar(select(func.count()).select_from(Order))
            out["lines"] = session.scalar(select(func.count()).select_from(OrderLine))
            revenue = func.sum(OrderLine.qty * Product.price)
            rows = session.execute(
                select(Customer.region, func.count(func.distinct(Order.id)), revenue)
                .join(Customer.orders)
                .join(Order.lines)
                .join(OrderLine.product)
                .group_by(Customer.region)
                .order_by(Customer.region)
            ).all()
            out["revenue by region"] = [[r, n, str(v)] for r, n, v in rows]
            top = session.execute(
                select(Customer.name, revenue.label("revenue"))
                .join(Customer.orders)
                .join(Order.lines)
                .join(OrderLine.product)
                .where(Customer.region.in_(["north", "east"]), Product.price > 10)
                .group_by(Customer.id)
                .order_by(revenue.desc(), Customer.id)
                .limit(5)
            ).all()
            out["top customers"] = [[name, str(v)] for name, v in top]
            customers = session.scalars(
                select(Customer)
                .where(Customer.id <= 5)
                .options(selectinload(Customer.orders).selectinload(Order.lines).selectinload(OrderLine.product))
                .order_by(Customer.id)
            ).all()
            out["eager loaded"] = [
                [c.name, sorted([o.ref, o.placed_at.isoformat(), sorted((ln.product.sku, ln.qty) for ln in o.lines)]
                                for o in c.orders)]
                for c in customers
            ]

        # bulk update by criteria, then a rollback that must leave nothing behind
        with Session(eng) as session:
            session.execute(update(Product).where(Product.sku.like("SKU-00%")).values(price=Product.price + 1))
            session.commit()
            session.add(Product(sku="SKU-000", price=Decimal(1)))
            try:
                session.commit()
                out["duplicate sku"] = "accepted"
            except IntegrityError as e:
                out["duplicate sku"] = describe(e.orig)
                session.rollback()
            try:
                session.execute(text("SELECT 1 / 0"))
            except DBAPIError as e:
                out["division"] = describe(e.orig)
                session.rollback()
            out["prices"] = str(session.scalar(select(func.sum(Product.price))))
            out["products"] = session.scalar(select(func.count()).select_from(Product))
        out["pool"] = {"size": eng.pool.size(), "checked out at the end": eng.pool.checkedout()}
    finally:
        eng.dispose()
    return out


def engine_settings():
    """Two engines whose connections carry different settings, from startup options and
    from a connect hook, used at the same time from several threads."""
    with engine().begin() as conn:
        conn.execute(text("CREATE TABLE public.whoami (v int)"))
        conn.execute(text("INSERT INTO public.whoami VALUES (-1)"))
        for i in range(2):
            conn.execute(text(f"CREATE SCHEMA tenant_{i}"))
            conn.execute(text(f"CREATE TABLE tenant_{i}.whoami (v int)"))
            conn.execute(text(f"INSERT INTO tenant_{i}.whoami VALUES ({i})"))

    zones = ["America/Denver", "Asia/Singapore"]
    engines = []
    for i in range(2):
        eng = engine(
            pool_size=2, max_overflow=0, pool_timeout=120,
            connect_args={"options": f"-c search_path=tenant_{i},public", "application_name": f"engine_{i}"},
        )

        @event.listens_for(eng, "connect")
        def on_connect(dbapi_conn, _record, zone=zones[i]):
            with dbapi_conn.cursor() as cur:
                cur.execute(f"SET TimeZone TO '{zone}'")
            dbapi_conn.commit()

        engines.append(eng)

    problems, seen = [], set()
    lock = threading.Lock()

    def use(t):
        i = t % 2
        want = (f"tenant_{i},public", f"engine_{i}", zones[i], i)
        try:
            for k in range(10):
                with Session(engines[i]) as session:
                    row = tuple(session.execute(text(
                        "SELECT current_setting('search_path'), current_setting('application_name'), "
                        "current_setting('TimeZone'), (SELECT v FROM whoami)"
                    )).one())
                    if k % 4 == 0:
                        # a setting local to this transaction, gone at its end
                        session.execute(text("SET LOCAL TimeZone TO 'Asia/Tokyo'"))
                    session.commit()
                with lock:
                    seen.add(tuple(str(v) for v in row))
                    if row != want:
                        problems.append(f"engine {i} thread {t} use {k}: {row} is not {want}")
        except Exception as e:  # noqa: BLE001
            with lock:
                problems.append(f"engine {i} thread {t}: {describe(e)}")

    threads = [threading.Thread(target=use, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for eng in engines:
        eng.dispose()
    if problems:
        FAILED.append("engine_settings")
    return {"problems": summarize(problems), "seen": sorted(seen)}


record("orm_over_pool", orm_over_pool)
record("engine_settings", engine_settings)
finish()
